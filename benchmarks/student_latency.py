"""Single-observation latency of the distilled student, every way it can run, side by side in one process.

Runtimes (each gets a numpy observation and returns a numpy action, one thread, after warm-up):

* torch fp32           the training module itself (``torch.set_num_threads(1)``, inference mode)
* ONNX fp32, run()     onnxruntime ``InferenceSession.run`` with a feed dict (the usual way to call it)
* ONNX fp32            ``cadenza.distill.runtime.OnnxStudent``: onnxruntime with pre-bound I/O buffers
* ONNX int8            the same runtime on the int8 (dynamic quantization) export
* numpy fp32           ``cadenza.distill.runtime.NumpyStudent``: matrix products over the safetensors weights

The runtimes are measured in interleaved rounds (``--repeats``, ``--iters`` calls each after ``--warmup``)
and each row reports the median over rounds of the per-round p50 / p99, so a burst of load on a shared
machine does not land on one runtime only. The student is the default architecture (18 -> 64 -> 64 -> 3)
with fresh weights, or with ``--project`` the newest registered student of a project.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/student_latency.py [--project examples/rescue-dog]

Writes ``benchmarks/results/student_latency.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cadenza.accel.hardware import cpu_name
from cadenza.distill.export import export_onnx, load_weights, quantize_int8, save_weights
from cadenza.distill.latency import measure_latency
from cadenza.distill.runtime import (
    FP32_NAME,
    INT8_NAME,
    WEIGHTS_NAME,
    NumpyStudent,
    OnnxStudent,
)
from cadenza.distill.student import Student, StudentArch
from cadenza.utils.versions import library_versions

OUT = Path(__file__).parent / "results" / "student_latency.json"
SHIPPED = "onnx_fp32"
GOAL_P50_US, GOAL_RATIO = 10.0, 1.5
LABELS = {
    "torch_fp32": "torch fp32",
    "onnx_fp32_run": "ONNX fp32, session.run()",
    "onnx_fp32": "ONNX fp32 (I/O binding)",
    "onnx_int8": "ONNX int8 (I/O binding)",
    "numpy_fp32": "numpy fp32",
}


def _student_files(project: str | None, workdir: Path) -> tuple[dict[str, Path], str]:
    if project:
        from cadenza.governance.registry import Registry

        reg = Registry(project)
        version = reg.latest("student")
        if version is None:
            raise SystemExit(f"{project}: no student registered; run cadenza env distill {project} --quantize")
        files = {n: reg.path("student", version, n) for n in (FP32_NAME, WEIGHTS_NAME)}
        if INT8_NAME in reg.verify("student", version)["files"]:
            files[INT8_NAME] = reg.path("student", version, INT8_NAME)
        else:
            files[INT8_NAME] = workdir / INT8_NAME
            quantize_int8(files[FP32_NAME], files[INT8_NAME])
        return files, f"{project} student {version}"
    torch.manual_seed(0)
    s = Student(StudentArch(obs_dim=18, act_dim=3))
    rng = np.random.default_rng(0)
    s.set_normaliser(rng.normal(0, 0.3, 18), rng.uniform(0.2, 2.0, 18))
    files = {n: workdir / n for n in (FP32_NAME, INT8_NAME, WEIGHTS_NAME)}
    save_weights(s, files[WEIGHTS_NAME])
    export_onnx(s, files[FP32_NAME])
    quantize_int8(files[FP32_NAME], files[INT8_NAME])
    return files, "fresh student, default architecture"


def _runtimes(files: dict[str, Path]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import onnxruntime as ort

    torch.set_num_threads(1)
    module = load_weights(files[WEIGHTS_NAME]).eval()

    def torch_act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(obs.reshape(1, -1).astype(np.float32))).numpy()

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(files[FP32_NAME]), so, providers=["CPUExecutionProvider"])

    def ort_run(obs: np.ndarray) -> np.ndarray:
        return sess.run(None, {"obs": obs.reshape(1, -1).astype(np.float32)})[0]

    return {"torch_fp32": torch_act, "onnx_fp32_run": ort_run, "onnx_fp32": OnnxStudent(files[FP32_NAME]).act,
            "onnx_int8": OnnxStudent(files[INT8_NAME]).act, "numpy_fp32": NumpyStudent(files[WEIGHTS_NAME]).act}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=None, help="use this project's newest student (default: a fresh one)")
    ap.add_argument("--iters", type=int, default=20000, help="timed calls per runtime and round (default 20000)")
    ap.add_argument("--warmup", type=int, default=2000, help="untimed calls before each timing (default 2000)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cadenza-lat-") as tmp:
        files, which = _student_files(args.project, Path(tmp))
        runtimes = _runtimes(files)
        obs = np.random.default_rng(1).normal(size=18)
        ref = runtimes["torch_fp32"](obs).ravel()
        max_diff = {k: float(np.abs(np.asarray(f(obs), dtype=np.float64).ravel() - ref).max())
                    for k, f in runtimes.items()}
        per: dict[str, list[tuple[float, float]]] = {k: [] for k in runtimes}
        for _ in range(args.repeats):
            for name, fn in runtimes.items():
                lat = measure_latency(fn, obs, warmup=args.warmup, iters=args.iters)
                per[name].append((lat["p50_us"], lat["p99_us"]))
        sizes = {n: p.stat().st_size for n, p in files.items()}
    rows = {k: {"p50_us": statistics.median(p for p, _ in v), "p99_us": statistics.median(q for _, q in v),
                "rounds": [{"p50_us": p, "p99_us": q} for p, q in v], "max_abs_diff_vs_torch": max_diff[k]}
            for k, v in per.items()}
    fastest = min(rows, key=lambda k: rows[k]["p50_us"])
    shipped = rows[SHIPPED]
    ratio = shipped["p50_us"] / rows[fastest]["p50_us"]
    result = {
        "student": which, "shipped_runtime": SHIPPED, "fastest": fastest, "shipped_over_fastest": ratio,
        "goal": {"shipped_p50_us_at_most": GOAL_P50_US, "within_x_of_fastest": GOAL_RATIO,
                 "p50_met": shipped["p50_us"] <= GOAL_P50_US, "ratio_met": ratio <= GOAL_RATIO},
        "budget_us": 20000, "runtimes": rows, "bytes": sizes,
        "iters": args.iters, "warmup": args.warmup, "repeats": args.repeats,
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "versions": library_versions("torch", "onnx", "onnxruntime"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")

    t = Table(title=f"student latency, 1 observation, 1 thread ({which}); median of {args.repeats} rounds x "
                    f"{args.iters} calls", title_justify="left")
    for col in ("runtime", "p50 (us)", "p99 (us)", "vs fastest", "max |diff| vs torch"):
        t.add_column(col, justify="left" if col == "runtime" else "right")
    for k, r in sorted(rows.items(), key=lambda kv: kv[1]["p50_us"]):
        t.add_row(LABELS[k] + (" [shipped]" if k == SHIPPED else ""), f"{r['p50_us']:.2f}", f"{r['p99_us']:.2f}",
                  f"{r['p50_us'] / rows[fastest]['p50_us']:.2f}x", f"{r['max_abs_diff_vs_torch']:.1e}")
    console = Console()
    console.print(t)
    console.print(f"shipped runtime p50 {shipped['p50_us']:.2f} us (goal <= {GOAL_P50_US:g}: "
                  f"{'met' if result['goal']['p50_met'] else 'NOT met'}), {ratio:.2f}x the fastest (goal <= "
                  f"{GOAL_RATIO:g}x: {'met' if result['goal']['ratio_met'] else 'NOT met'}); budget 20,000 us. "
                  f"Load average {result['machine']['load_average']}. Wrote {OUT}")


if __name__ == "__main__":
    main()
