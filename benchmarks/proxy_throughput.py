"""Rescue-dog proxy: env steps per second on one core, and how well the built-in base does alone.

    .venv/bin/python benchmarks/proxy_throughput.py            # full run (about a minute)
    .venv/bin/python benchmarks/proxy_throughput.py --quick    # smoke run
    .venv/bin/python benchmarks/proxy_throughput.py --profile  # also cProfile RescueDogProxy.step

Throughput is measured single-threaded (BLAS/OpenMP threads set to 1 and, on Linux, the process
pinned to one CPU) for 1, 64 and 1024 parallel envs: the env alone (fixed random actions), the env
driven by the base (one base call per batched step), and the base alone. Timing starts after two
horizons of warm-up, when episodes are out of phase and some env resets on most steps, as in
training. Each figure is the median of several repeats.
Base-alone success is the outcome of the first episode of each of ``--episodes`` parallel envs (so
short episodes are not over-counted), with a 95% Wilson interval, at levels 0, 0.5 and 1.0.
Results go to benchmarks/results/proxy_throughput.json; everything is labelled ``proxy``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cadenza.base.rescue_dog import RescueDogBase  # noqa: E402
from cadenza.governance.stats import wilson  # noqa: E402
from cadenza.residual.evaluate import evaluate  # noqa: E402
from cadenza.tasks.proxy.rescue_dog import HORIZON, RescueDogProxy  # noqa: E402
from cadenza.utils.io import atomic_write_json  # noqa: E402
from cadenza.utils.versions import library_versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "proxy_throughput.json"
SIZES = (1, 64, 1024)
LEVELS = (0.0, 0.5, 1.0)
GOAL_STEPS_PER_S = 1_000_000  # with 1024 envs on one core
WARMUP_HORIZONS = 2  # batched steps of warm-up, in horizons, before any timing (steady state)
ACTION_BANK = 64  # distinct pre-drawn action batches, cycled, so drawing actions costs nothing


def pin_to_one_cpu() -> int | None:
    """Pin this process to the first CPU it may run on (Linux); returns that CPU or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def steps_for(num_envs: int, scale: float) -> int:
    """Batched steps per repeat: about 200k env steps for the big batches, 3000 calls for one env."""
    return max(50, int(scale * (3000 if num_envs == 1 else 200_000 // num_envs)))


def measure_env(num_envs: int, steps: int, repeats: int, with_base: bool, seed: int) -> list[float]:
    """Env steps/s of ``repeats`` timed windows of ``steps`` batched steps, in steady state.

    All envs start together, so the first episodes end in a burst; the warm-up runs two horizons
    first so that, as in training, some envs finish (and reset) on most steps.
    """
    env = RescueDogProxy(num_envs=num_envs, level=1.0)
    base = RescueDogBase()
    bank = np.random.default_rng(seed).uniform(-1.0, 1.0, (ACTION_BANK, num_envs, 3))
    obs, _ = env.reset(seed=seed)
    for i in range(WARMUP_HORIZONS * env.spec.horizon):
        obs, *_ = env.step(base(obs) if with_base else bank[i % ACTION_BANK])
    rates = []
    for _ in range(repeats):
        if with_base:
            t0 = time.perf_counter()
            for _ in range(steps):
                obs, *_ = env.step(base(obs))
        else:
            t0 = time.perf_counter()
            for i in range(steps):
                env.step(bank[i % ACTION_BANK])
        rates.append(num_envs * steps / (time.perf_counter() - t0))
    return rates


def measure_base(num_envs: int, steps: int, repeats: int, seed: int) -> list[float]:
    env = RescueDogProxy(num_envs=num_envs, level=1.0)
    obs, _ = env.reset(seed=seed)
    base = RescueDogBase()
    base(obs)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            base(obs)
        rates.append(num_envs * steps / (time.perf_counter() - t0))
    return rates


def throughput(repeats: int, scale: float, seed: int) -> list[dict[str, Any]]:
    rows = []
    for n in SIZES:
        steps = steps_for(n, scale)
        row: dict[str, Any] = {"num_envs": n, "batched_steps_per_repeat": steps, "repeats": repeats,
                               "warmup_batched_steps": WARMUP_HORIZONS * HORIZON}
        for key, rates in (("env", measure_env(n, steps, repeats, False, seed)),
                           ("env_base", measure_env(n, steps, repeats, True, seed)),
                           ("base", measure_base(n, steps, repeats, seed))):
            row[f"{key}_steps_per_s"] = statistics.median(rates)
            row[f"{key}_steps_per_s_min"] = min(rates)
            row[f"{key}_steps_per_s_max"] = max(rates)
        row["env_us_per_batched_step"] = 1e6 * n / row["env_steps_per_s"]
        rows.append(row)
    return rows


def first_episodes(level: float, episodes: int, seed: int) -> dict[str, Any]:
    """Base alone: the first episode of each of ``episodes`` envs, run in one batch."""
    stats = evaluate(lambda n: RescueDogProxy(num_envs=n, level=level), RescueDogBase(), None,
                     episodes=episodes, seed=seed, chunk=episodes, label="base alone")
    k, kc = stats.successes, stats.collisions
    ci, cci = wilson(k, episodes), wilson(kc, episodes)
    return {
        "level": level, "episodes": episodes, "seed": seed,
        "successes": k, "success_rate": k / episodes, "success_ci95": list(ci),
        "collisions": kc, "collision_rate": kc / episodes, "collision_ci95": list(cci),
        "timeouts": int(episodes - k - kc), "mean_episode_steps": stats.mean_length,
    }


def profile_step(num_envs: int, steps: int, seed: int, top: int = 18) -> str:
    env = RescueDogProxy(num_envs=num_envs, level=1.0)
    bank = np.random.default_rng(seed).uniform(-1.0, 1.0, (ACTION_BANK, num_envs, 3))
    env.reset(seed=seed)
    for i in range(WARMUP_HORIZONS * env.spec.horizon):
        env.step(bank[i % ACTION_BANK])
    prof = cProfile.Profile()
    prof.enable()
    for i in range(steps):
        env.step(bank[i % ACTION_BANK])
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats per figure; the median is kept (default 5)")
    ap.add_argument("--episodes", type=int, default=1000, help="base-alone episodes per level (default 1000)")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the success runs (default 2026)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, short timings, 200 episodes")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    ap.add_argument("--profile", action="store_true", help="also cProfile 1024-env stepping and print the hot spots")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = ap.parse_args()
    repeats, scale, episodes = (2, 0.2, 200) if args.quick else (args.repeats, 1.0, args.episodes)

    cpu = None if args.no_pin else pin_to_one_cpu()
    console = Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=120)
    console.print(f"proxy throughput on one core ({cpu_model()}, pinned to CPU {cpu}), "
                  f"median of {repeats} repeats ...")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = throughput(repeats, scale, args.seed)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    console.print(f"base-alone success, {episodes} episodes per level ...")
    success = [first_episodes(lv, episodes, args.seed) for lv in LEVELS]

    big = next(r for r in rows if r["num_envs"] == 1024)
    result = {
        "kind": "cadenza.bench.proxy_throughput",
        "task": "proxy",
        "task_name": "rescue-dog",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "pinned_cpu": cpu, "threads": 1,
                    "platform": platform.platform(),
                    # other processes on the machine slow every figure down: the 1-minute load average
                    # before and after the timings says how busy it was
                    "load_average_1m_before_after": [None if x is None else round(x[0], 2)
                                                     for x in (load_before, load_after)]},
        "settings": {"repeats": repeats, "scale": scale, "episodes": episodes, "seed": args.seed, "quick": args.quick},
        "throughput": rows,
        "base_success": success,
        "goal": {"env_steps_per_s_1024_envs": GOAL_STEPS_PER_S,
                 "measured": big["env_steps_per_s"], "met": big["env_steps_per_s"] >= GOAL_STEPS_PER_S},
        "versions": library_versions("scipy"),
    }
    atomic_write_json(args.out, result)

    t = Table(title="rescue-dog proxy [proxy]: env steps/s, one core (median)".replace("[", r"\["),
              title_justify="left")
    for col in ("envs", "env only", "env + base", "base only", "us / batched step"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        t.add_row(str(r["num_envs"]), fmt_rate(r["env_steps_per_s"]), fmt_rate(r["env_base_steps_per_s"]),
                  fmt_rate(r["base_steps_per_s"]), f"{r['env_us_per_batched_step']:.1f}")
    console.print(t)
    if load_after is not None and load_after[0] > 1.0:
        console.print(f"note: the machine was busy (1-minute load average {load_after[0]:.1f} on "
                      f"{os.cpu_count()} CPUs); figures are lower than on an idle core")
    met = "met" if result["goal"]["met"] else "NOT met"
    console.print(f"goal > {GOAL_STEPS_PER_S:,} env steps/s with 1024 envs: {met} "
                  f"({fmt_rate(big['env_steps_per_s'])})")

    s = Table(title=f"base alone [proxy], first episode of {episodes} envs, 95% Wilson intervals".replace("[", r"\["),
              title_justify="left")
    for col in ("level", "success", "95% CI", "collision", "95% CI", "timeout", "mean steps"):
        s.add_column(col, justify="right", no_wrap=True)
    for r in success:
        s.add_row(f"{r['level']:.1f}", f"{r['success_rate']:.3f}",
                  f"[{r['success_ci95'][0]:.3f}, {r['success_ci95'][1]:.3f}]".replace("[", r"\["),
                  f"{r['collision_rate']:.3f}",
                  f"[{r['collision_ci95'][0]:.3f}, {r['collision_ci95'][1]:.3f}]".replace("[", r"\["),
                  f"{r['timeouts'] / r['episodes']:.3f}", f"{r['mean_episode_steps']:.0f}")
    console.print(s)
    console.print(f"wrote {args.out}", soft_wrap=True)

    if args.profile:
        print("cProfile of RescueDogProxy.step, 1024 envs, 300 steps in steady state, sorted by own time:")
        print(profile_step(1024, 300, args.seed))


if __name__ == "__main__":
    main()
