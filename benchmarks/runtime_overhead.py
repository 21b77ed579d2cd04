"""What the safe runtime costs per control step over calling the base alone (rescue-dog, CPU).

The base is the built-in rescue-dog controller (as ``load_base`` returns it); the residual has the
rescue-dog architecture from ``examples/rescue-dog`` (obs 18 + base action 3 -> 2 x 256 tanh -> 3 +
gate); ``--policy`` uses a trained policy file instead of fresh weights (same cost: same shapes).
Every variant steps through the same real proxy observations (float32, as the proxy gives them), one
at a time, in interleaved rounds; each call is timed on its own and the medians (p50) are compared:

    overhead = p50(runtime.step(obs)) - p50(base(obs))

Variants: the runtime as shipped (float32 numpy forward, ``mode="check"``), the switch off, a float64
numpy forward, the torch forward, the worker-thread deadline (``mode="preempt"``), a student hook;
then the pieces of a step timed alone in a tight loop (hot caches, so each is cheaper than inside a
step, where the base runs in between): the forward in float32 / float64 / onnxruntime with pre-bound
buffers, the control law on Python floats against ``control_law`` in numpy, and two ways to check an
observation for NaN / inf. The runtime rows also report the correction's own latency inside the step
(from ``health()``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/runtime_overhead.py [--rounds 7] [--policy PATH]

Writes ``benchmarks/results/runtime_overhead.json`` and prints a table. Goal: overhead < 20 us.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cadenza.base.loader import load_base
from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import load_policy
from cadenza.runtime import NumpyResidual, SafeRuntime
from cadenza.runtime.fast_law import make_law
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy
from cadenza.utils.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "runtime_overhead.json"
GOAL_US = 20.0


def observations(base: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    task = RescueDogProxy(num_envs=16, level=1.0)
    obs, _ = task.reset(seed=2024)
    rows = []
    while sum(len(r) for r in rows) < n:
        rows.append(obs.copy())
        obs, *_ = task.step(base(obs))
    return np.concatenate(rows)[:n]


def rescue_dog_actor(obs: np.ndarray, policy: Path | None) -> tuple[ResidualActor, str]:
    if policy is not None:
        actor, _ = load_policy(policy)
        return actor, str(policy)
    torch.manual_seed(0)
    actor = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=256, alpha=0.15, rate_limit=0.5))
    actor.norm.update(obs)
    with torch.no_grad():  # corrections of a realistic size instead of the near-zero initial head
        torch.nn.init.normal_(actor.net[-1].weight, std=0.05)
    return actor, "fresh weights, rescue-dog architecture (normaliser fitted on the observations)"


def onnx_forward(fwd: NumpyResidual) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The same float32 forward as one onnxruntime session with pre-bound input / output buffers."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    d, k = fwd.arch.obs_dim, fwd.arch.act_dim
    if not fwd.folded:
        return None
    inits = [numpy_helper.from_array(fwd.obs_low.astype(np.float32), "low"),
             numpy_helper.from_array(fwd.obs_high.astype(np.float32), "high")]
    nodes = [helper.make_node("Max", ["obs", "low"], ["lo_obs"]), helper.make_node("Min", ["lo_obs", "high"], ["z"]),
             helper.make_node("Concat", ["z", "base"], ["h0"], axis=1)]
    for i, w in enumerate(fwd.weights):
        inits += [numpy_helper.from_array(np.ascontiguousarray(w[:-1]), f"w{i}"),
                  numpy_helper.from_array(w[-1], f"b{i}")]
        last = i == len(fwd.weights) - 1
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], ["u" if last else f"p{i}"]))
        if not last:
            nodes.append(helper.make_node("Tanh", [f"p{i}"], [f"h{i + 1}"]))
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, d]),
                                                  helper.make_tensor_value_info("base", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, fwd.out.shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    obs_in, base_in = np.zeros((1, d), np.float32), np.zeros((1, k), np.float32)
    out = np.zeros((1, fwd.out.shape[0]), np.float32)
    io = sess.io_binding()
    values = [ort.OrtValue.ortvalue_from_numpy(x) for x in (obs_in, base_in, out)]  # kept alive with the closure
    io.bind_ortvalue_input("obs", values[0])
    io.bind_ortvalue_input("base", values[1])
    io.bind_ortvalue_output("u", values[2])
    run = sess.run_with_iobinding

    def forward(obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        obs_in[0] = obs
        base_in[0] = a_base
        run(io)
        return out[0]

    forward.values = values  # type: ignore[attr-defined]
    return forward


def time_calls(fn: Callable[[np.ndarray], Any], obs: np.ndarray) -> tuple[np.ndarray, float]:
    """Wall time of each call (us), and the thread's CPU time per call over the whole pass (us)."""
    out = np.empty(len(obs))
    clock = time.perf_counter_ns
    c0 = time.thread_time_ns()
    for i, o in enumerate(obs):
        t0 = clock()
        fn(o)
        out[i] = clock() - t0
    return out / 1e3, (time.thread_time_ns() - c0) / len(obs) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds over the observations (default 7)")
    ap.add_argument("--steps", type=int, default=2000, help="observations per round (default 2000)")
    ap.add_argument("--policy", type=Path, default=None, help="a trained residual policy file (default: fresh weights)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write the JSON (default {OUT})")
    args = ap.parse_args()

    base = load_base("builtin:rescue-dog", act_dim=3)
    obs = observations(base, args.steps)
    actor, weights = rescue_dog_actor(obs, args.policy)
    arch = actor.arch
    np_fwd = NumpyResidual(actor)
    forward_err = np_fwd.check_against(actor)
    np_fwd64 = NumpyResidual(actor, dtype="float64")
    ort_fwd = onnx_forward(np_fwd)
    a_base = base(obs[:1])[0]
    u = np_fwd(obs[0], a_base).astype(np.float64)
    if ort_fwd is not None:
        np.testing.assert_allclose(ort_fwd(obs[0], a_base), u, atol=1e-5)
    prev = np.zeros(3)
    law = make_law(arch.act_dim, alpha=arch.alpha, gate=arch.gate, rate_limit=arch.rate_limit)
    ab_list, u_list, prev_list = a_base.tolist(), u.tolist(), prev.tolist()
    student_actor = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=64, gate=False, use_base=False))
    student_np = NumpyResidual(student_actor)

    def student(o: np.ndarray) -> np.ndarray:
        return student_np(o[0])

    runtimes = {
        "runtime: residual, numpy, check (default)": SafeRuntime.for_residual(base, actor),
        "runtime: switch off": SafeRuntime.for_residual(base, actor, enabled=False),
        "runtime: residual, numpy float64 forward": SafeRuntime.for_residual(base, np_fwd64),
        "runtime: residual, torch forward": SafeRuntime.for_residual(base, actor, backend="torch"),
        "runtime: residual, preempt (worker thread)": SafeRuntime.for_residual(base, actor, mode="preempt"),
        "runtime: student hook (numpy 2x64 MLP)": SafeRuntime.for_student(base, student, act_dim=3),
    }
    variants: dict[str, Callable[[np.ndarray], Any]] = {"base alone": lambda o: base(o[None])}
    variants.update({k: rt.step for k, rt in runtimes.items()})
    variants["piece: numpy forward, float32 (shipped)"] = lambda o: np_fwd(o, a_base)
    variants["piece: numpy forward, float64"] = lambda o: np_fwd64(o, a_base)
    if ort_fwd is not None:
        variants["piece: onnxruntime forward, pre-bound IO"] = lambda o: ort_fwd(o, a_base)
    variants["piece: control law on floats (shipped)"] = lambda o: law(ab_list, u_list, prev_list)
    variants["piece: control_law, numpy"] = lambda o: control_law(
        a_base, u[:3], alpha=arch.alpha, gate=u[3:4], prev_delta=prev, rate_limit=arch.rate_limit)
    variants["piece: obs check, isfinite(sum(tolist())) (shipped)"] = lambda o: math.isfinite(sum(o.tolist()))
    variants["piece: obs check, np.isfinite(o).all()"] = lambda o: np.isfinite(o).all()

    for fn in variants.values():  # warm-up
        time_calls(fn, obs[:200])
    for rt in runtimes.values():
        rt.reset_counters()
    load_before = os.getloadavg()
    samples: dict[str, list[np.ndarray]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            wall, cpu_per_call = time_calls(variants[name], obs)
            samples[name].append(wall)
            cpu[name].append(cpu_per_call)
    load_after = os.getloadavg()
    gc.collect()

    health = {k: rt.health().as_dict() for k, rt in runtimes.items()}
    for rt in runtimes.values():
        rt.close()
    stats: dict[str, dict[str, float]] = {}
    for name, parts in samples.items():
        v = np.concatenate(parts)
        stats[name] = {"p50_us": float(np.percentile(v, 50)), "p99_us": float(np.percentile(v, 99)),
                       "mean_us": float(v.mean()), "cpu_best_us": float(min(cpu[name])),
                       "cpu_median_us": float(np.median(cpu[name])), "calls": int(v.size)}
    base_stats = stats["base alone"]
    for name, s in stats.items():
        if name.startswith("runtime"):
            s["overhead_p50_us"] = s["p50_us"] - base_stats["p50_us"]
            s["overhead_cpu_best_us"] = s["cpu_best_us"] - base_stats["cpu_best_us"]
            s["correction_in_step_p50_us"] = health[name]["latency_us"]["correction"]["p50"]
    default = stats["runtime: residual, numpy, check (default)"]
    headline = default["overhead_p50_us"]

    result = {
        "benchmark": "runtime_overhead", "task": "proxy", "base": "builtin:rescue-dog",
        "residual": {"architecture": arch.as_dict(), "weights": weights, "forward": np_fwd.describe(),
                     "forward_max_error_vs_torch_float64": forward_err},
        "rounds": args.rounds, "steps_per_round": args.steps, "goal_us": GOAL_US,
        "overhead_p50_us": headline, "overhead_cpu_best_us": default["overhead_cpu_best_us"],
        "meets_goal": headline < GOAL_US, "variants": stats,
        "timing": "p50 of each call's wall time over all rounds; cpu_best: the thread's CPU time per call in "
                  "its best round (robust to other processes taking the CPU); pieces run alone in a tight loop",
        "runtime_health": health,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "loadavg_before": load_before, "loadavg_after": load_after,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)

    t = Table(title=f"safe runtime per step \\[proxy rescue-dog, CPU], {args.rounds} x {args.steps} calls each",
              title_justify="left")
    for col in ("variant", "p50 us", "p99 us", "overhead p50", "CPU us (best)", "overhead CPU", "correction p50"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for name, s in stats.items():
        ov, oc, co = s.get("overhead_p50_us"), s.get("overhead_cpu_best_us"), s.get("correction_in_step_p50_us")
        t.add_row(name, f"{s['p50_us']:.1f}", f"{s['p99_us']:.1f}", "" if ov is None else f"{ov:+.1f}",
                  f"{s['cpu_best_us']:.1f}", "" if oc is None else f"{oc:+.1f}", "" if co is None else f"{co:.1f}")
    con = Console(width=150)
    con.print(t)
    verdict = "meets" if headline < GOAL_US else "MISSES"
    con.print(f"overhead of the default runtime over the base alone: {headline:.1f} us per step at p50 "
              f"({verdict} the {GOAL_US:.0f} us goal), {default['overhead_cpu_best_us']:.1f} us of CPU time; "
              f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
