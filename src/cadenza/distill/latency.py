"""The onboard latency harness: time a student's single-observation call, in this process or in a fresh,
torch-free one (``python -m cadenza.distill.latency SPEC``), as ``env distill`` and ``distill eval`` do.

The onboard runtime itself (:mod:`cadenza.distill.runtime`) carries no measuring code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cadenza.errors import CadenzaError


def measure_latency(act: Callable[[np.ndarray], Any], obs: np.ndarray, *, warmup: int = 500,
                    iters: int = 5000) -> dict[str, float]:
    """Single-call latency of ``act(obs)`` after ``warmup`` calls: p50 / p99 / mean in microseconds."""
    for _ in range(warmup):
        act(obs)
    ts = np.empty(iters)
    clock = time.perf_counter_ns
    for i in range(iters):
        t = clock()
        act(obs)
        ts[i] = clock() - t
    ts /= 1e3
    return {"p50_us": float(np.percentile(ts, 50)), "p99_us": float(np.percentile(ts, 99)),
            "mean_us": float(ts.mean()), "iters": iters, "warmup": warmup}


def latency_in_fresh_process(files: dict[str, str | Path], *, repeats: int = 3, warmup: int = 2000,
                             iters: int = 5000, timeout: float = 300.0) -> dict[str, dict[str, float]]:
    """Single-observation latency of each student file, measured in a new interpreter that imports this
    module and the onboard runtime only (no torch, as on the robot), one thread, runtimes interleaved over
    ``repeats`` rounds; per file the median of the rounds' p50 and p99."""
    import subprocess
    import sys

    spec = json.dumps({"files": {k: str(v) for k, v in files.items()}, "repeats": repeats, "warmup": warmup,
                       "iters": iters})
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "cadenza.distill.latency", spec], capture_output=True, text=True,
                         timeout=timeout, env=env)
    if out.returncode != 0:
        raise CadenzaError("latency measurement failed: "
                           f"{out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _latency_main(spec_json: str) -> None:
    from cadenza.distill.runtime import load_student

    spec = json.loads(spec_json)
    students = {k: load_student(v) for k, v in spec["files"].items()}
    obs = np.zeros(next(iter(students.values())).obs_dim, dtype=np.float32)
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in students}
    for _ in range(spec["repeats"]):
        for k, st in students.items():
            rounds[k].append(measure_latency(st.act, obs, warmup=spec["warmup"], iters=spec["iters"]))
    res = {k: {"p50_us": float(np.median([r["p50_us"] for r in v])),
               "p99_us": float(np.median([r["p99_us"] for r in v])),
               "iters": spec["iters"] * spec["repeats"], "warmup": spec["warmup"], "process": "fresh, torch-free"}
           for k, v in rounds.items()}
    print(json.dumps(res))


if __name__ == "__main__":
    import sys

    _latency_main(sys.argv[1])
