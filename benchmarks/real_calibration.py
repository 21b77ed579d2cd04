"""Calibration of the built-in real tasks: how often the frozen base alone succeeds per level.

For ``builtin:reacher`` and ``builtin:rescue-dog`` (MuJoCo) it runs the built-in base at levels
0, 0.5 and 1.0 and prints success and fall rates with 95 % Wilson intervals, plus the env steps per
second of the in-process batched task (base inference included, one process). With ``--oracle`` it
also runs, at level 1.0, a residual that is told the perturbation it must undo (reacher: the bias
torque and the gain loss; rescue-dog: the weak legs' gain loss), passed through cadenza's control
law with the example projects' alpha: proof that the needed correction fits inside alpha.

Every env runs exactly ``episodes / num_envs`` episodes, so short (successful or failed) episodes
are not over-counted. Writes ``benchmarks/results/real_calibration.json``.

    OMP_NUM_THREADS=1 python benchmarks/real_calibration.py            # 400 episodes per cell
    OMP_NUM_THREADS=1 python benchmarks/real_calibration.py --episodes 96 --tasks reacher
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from cadenza.base.loader import load_base
from cadenza.project.config import Project, parse_config
from cadenza.residual.control_law import control_law
from cadenza.tasks.factory import base_source, make_task
from cadenza.tasks.real.batched import RealTask
from cadenza.tasks.real.perturb import ActuatorGain, BiasTorque
from cadenza.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "real_calibration.json"
TASKS = {  # task -> (base, alpha the example project uses)
    "reacher": ("builtin:reacher-pd", 0.2),
    "rescue-dog": ("builtin:rescue-dog-gait", 0.15),
}

Residual = Callable[[RealTask, np.ndarray, np.ndarray], np.ndarray]


def project_for(task: str) -> Project:
    base, alpha = TASKS[task]
    text = (f'[project]\nname = "calibrate-{task}"\n[task.real]\ntask = "builtin:{task}"\nbase = "{base}"\n'
            f"[residual]\nalpha = {alpha}\n")
    path = ROOT / "benchmarks" / "cadenza.toml"  # never written: the config is parsed from text
    return Project(ROOT, parse_config(path, text.encode()), text.encode())


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def oracle_reacher(alpha: float) -> Residual:
    """Undo the bias torque and the gain loss exactly: a_final = (a_base - bias / gear) / gain."""

    def fn(task: RealTask, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        out = np.empty_like(a_base)
        for i in range(task.num_envs):
            perts = task.perturbations(i)
            bias = next(p for p in perts if isinstance(p, BiasTorque)).force
            gain = 1.0 - next(p for p in perts if isinstance(p, ActuatorGain)).magnitude
            out[i] = ((a_base[i] - bias / 200.0) / gain - a_base[i]) / alpha
        return out

    return fn


def oracle_dog(alpha: float) -> Residual:
    """Undo the weak legs' gain loss: a_final = a_base / gain on those motors."""

    def fn(task: RealTask, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        gain = np.ones_like(a_base)
        for i in range(task.num_envs):
            p = next(p for p in task.perturbations(i) if isinstance(p, ActuatorGain))
            gain[i, p.ids] = 1.0 - p.magnitude
        return (a_base / gain - a_base) / alpha

    return fn


def run_cell(project: Project, level: float, episodes: int, num_envs: int, seed: int,
             residual: Residual | None = None, alpha: float = 0.0) -> dict[str, Any]:
    per_env = max(1, episodes // num_envs)
    t_build = time.perf_counter()
    task = make_task(project, num_envs=num_envs, level=level, real=True, seed=seed)
    build_s = time.perf_counter() - t_build
    assert isinstance(task, RealTask)
    base = load_base(base_source(project, real=True), project.root, task.spec.act_dim)
    obs, _ = task.reset(seed=seed)
    counted = np.zeros(num_envs, dtype=np.int64)
    succ = coll = 0
    lengths: list[int] = []
    steps = 0
    t0 = time.perf_counter()
    while (counted < per_env).any():
        a_base = base(obs)
        a = a_base if residual is None else control_law(a_base, residual(task, obs, a_base), alpha=alpha).action
        obs, _, term, trunc, info = task.step(a)
        steps += num_envs
        done = (term | trunc) & (counted < per_env)
        if done.any():
            succ += int(info["success"][done].sum())
            coll += int(info["collision"][done].sum())
            lengths += info["episode"]["l"][done].tolist()
            counted += done
    wall = time.perf_counter() - t0
    task.close()
    n = int(counted.sum())
    lo, hi = wilson(succ, n)
    clo, chi = wilson(coll, n)
    return {"label": task.spec.label, "level": level, "episodes": n, "successes": succ, "success_rate": succ / n,
            "success_ci95": [lo, hi], "collisions": coll, "collision_rate": coll / n, "collision_ci95": [clo, chi],
            "mean_length": float(np.mean(lengths)), "horizon": task.spec.horizon, "env_steps": steps,
            "wall_s": wall, "steps_per_s": steps / wall, "build_s": build_s, "num_envs": num_envs,
            "oracle_alpha": alpha if residual is not None else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="reacher,rescue-dog", help="comma-separated (default: both)")
    ap.add_argument("--levels", default="0,0.5,1", help="perturbation levels (default: 0,0.5,1)")
    ap.add_argument("--episodes", type=int, default=400, help="episodes per cell (default: 400)")
    ap.add_argument("--num-envs", type=int, default=16, help="envs stepped together (default: 16)")
    ap.add_argument("--seed", type=int, default=12345, help="reset seed (default: 12345)")
    ap.add_argument("--oracle", action="store_true", help="also run the oracle residual at level 1.0")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    for task in args.tasks.split(","):
        project = project_for(task)
        for level in (float(x) for x in args.levels.split(",")):
            rows.append({"task": task, "policy": "base", **run_cell(project, level, args.episodes, args.num_envs,
                                                                    args.seed)})
            _print_row(rows[-1])
        if args.oracle:
            alpha = TASKS[task][1]
            oracle = oracle_reacher(alpha) if task == "reacher" else oracle_dog(alpha)
            rows.append({"task": task, "policy": f"base + oracle residual (alpha {alpha})",
                         **run_cell(project, 1.0, args.episodes, args.num_envs, args.seed, oracle, alpha)})
            _print_row(rows[-1])
    atomic_write_json(args.out, {"kind": "cadenza.benchmark.real_calibration", "episodes_per_cell": args.episodes,
                                 "seed": args.seed, "rows": rows})
    print(f"wrote {args.out}")


def _print_row(r: dict[str, Any]) -> None:
    lo, hi = r["success_ci95"]
    print(f"{r['label']:<18} {r['policy']:<34} level {r['level']:.1f}  success {r['success_rate']:6.1%} "
          f"[{lo:5.1%}, {hi:5.1%}]  falls {r['collision_rate']:5.1%}  n={r['episodes']:<4} "
          f"len {r['mean_length']:5.1f}/{r['horizon']}  {r['steps_per_s']:7,.0f} env steps/s", flush=True)


if __name__ == "__main__":
    main()
