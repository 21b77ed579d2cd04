"""Scale-out on Ray against one machine: the bench's wall time and numbers, rollout throughput per actor.

**Bench.**
Runs the same bench (fresh copies of the project, same seeds and settings) on the local backend
(``--workers`` processes) and on a local Ray instance with as many CPUs, alternating ``--repeats``
times, checks that the per-run numbers (final cards, learning curves, steps to threshold) are
identical, and measures what Ray adds: its start (``ray.init`` of a local instance) and the
round-trip of an empty task (submit, schedule, run, fetch), from which the cost on a larger cluster
can be projected (a bench run is minutes; a task's overhead is milliseconds).

**Rollouts** (what ``train --rollout-workers N`` does each round): PPO's ``collect()`` on the
project's task (``task.num_envs`` envs x 128 steps, level 1.0) timed over ``--rounds`` rounds after
one warm-up round: in one piece in this process (1 torch thread), in N spawned local shard processes,
and on N Ray actors, for N = 1 and 2; env steps per second of rollout and the per-round overhead
(the round's wait beyond its slowest shard: pickling, the object store, scheduling).

Ray binds the machine's address; run this in a loopback-only namespace:

    scripts/loopback-only.sh .venv/bin/python benchmarks/scale.py [PROJECT] [--steps 50000] [--seeds 2]

Writes ``benchmarks/results/scale.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cadenza.accel.hardware import cpu_name
from cadenza.base.loader import load_base
from cadenza.bench.runner import resolve_settings, run_bench
from cadenza.project.config import load_project
from cadenza.residual.ppo import PPO, PPOConfig
from cadenza.residual.rollout import ShardPool, shard_specs
from cadenza.residual.scaffold import arch_from_spec
from cadenza.tasks.factory import base_source, make_task
from cadenza.utils.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "scale.json"


def numbers(report: dict[str, Any]) -> list[str]:
    return sorted(json.dumps([a["id"], r["seed"], r["final"], r["curve"], r["env_steps"], r["steps_to_threshold"]],
                             sort_keys=True) for a in report["arms"] for r in a["runs"])


def one_bench(src: Path, backend: str, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="cadenza-scale-") as tmp:
        root = Path(tmp) / src.name
        shutil.copytree(src, root, ignore=shutil.ignore_patterns(".cadenza", ".cadenza-env", "bench", "lora"))
        proj = load_project(root)
        s = resolve_settings(proj, steps=args.steps, seeds=args.seeds, arms=args.arms, eval_episodes=args.eval_episodes,
                             workers=args.workers, backend=backend)
        t0 = time.perf_counter()
        res = run_bench(proj, s)
        return time.perf_counter() - t0, res.report


def ray_overhead(cpus: int, tasks: int) -> dict[str, float]:
    import ray

    from cadenza.scale.ray_map import ray_map, ray_session

    t0 = time.perf_counter()
    with ray_session(None, cpus):
        start_s = time.perf_counter() - t0
        ray_map(abs, [0] * cpus)  # warm the workers
        per_task = []
        for _ in range(tasks):
            a = time.perf_counter()
            ray_map(abs, [0])
            per_task.append(1000 * (time.perf_counter() - a))
        assert ray.is_initialized()
    return {"ray_start_s": round(start_s, 2), "empty_task_roundtrip_ms_p50": round(statistics.median(per_task), 2)}


def rollout_rate(src: Path, backend: str, shards: int, rounds: int) -> dict[str, Any]:
    """PPO ``collect()`` timed per round: ``shards`` 0 = in one piece in this process."""
    proj = load_project(src)
    arch = arch_from_spec(proj, False)
    base = load_base(base_source(proj), proj.root, arch.act_dim)
    cfg = PPOConfig(num_envs=proj.config.task.num_envs, n_steps=128)
    pool = None
    if shards == 0:
        ppo = PPO(arch, cfg, make_task(proj, num_envs=cfg.num_envs, level=1.0, seed=0), base, seed=0)
    else:
        specs = shard_specs(str(proj.root), real=False, reward=proj.config.residual.reward, arch=arch, cfg=cfg,
                            seed=0, shards=shards)
        pool = ShardPool(specs, 1.0, ray=backend == "ray")
        ppo = PPO(arch, cfg, pool, base, seed=0, rollout=pool)
    walls, overheads = [], []
    try:
        for r in range(rounds + 1):
            a = time.perf_counter()
            ppo.collect()
            if r:  # round 0 warms up (first calls, page faults)
                walls.append(time.perf_counter() - a)
                overheads.append(ppo.rollout_timing.get("rollout_overhead_s", 0.0))
    finally:
        if pool is not None:
            pool.close()
    per_round = statistics.median(walls)
    return {"backend": backend, "shards": shards, "round_s_median": round(per_round, 4),
            "env_steps_per_s": round(cfg.num_envs * cfg.n_steps / per_round),
            "overhead_ms_median": round(1000 * statistics.median(overheads), 2), "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", nargs="?", default="examples/rescue-dog")
    ap.add_argument("--steps", type=int, default=50000, help="env steps per arm and seed (default 50000)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per arm (default 2)")
    ap.add_argument("--arms", default="residual,full,sb3", help="arms (default residual,full,sb3)")
    ap.add_argument("--eval-episodes", type=int, default=100, help="episodes per curve point (default 100)")
    ap.add_argument("--workers", type=int, default=2, help="local processes = Ray CPUs (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="alternating repeats per backend (default 1)")
    ap.add_argument("--rounds", type=int, default=8, help="timed rollout rounds per configuration (default 8)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if [n for _, n in socket.if_nameindex()] != ["lo"]:
        raise SystemExit("run this in a loopback-only namespace: scripts/loopback-only.sh .venv/bin/python "
                         "benchmarks/scale.py (Ray binds the machine's address otherwise)")
    src = Path(args.project).resolve()
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    reports: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeats):
        for backend in ("local", "ray"):
            wall, report = one_bench(src, backend, args)
            walls[backend].append(round(wall, 2))
            reports[backend] = report
    same = numbers(reports["local"]) == numbers(reports["ray"])
    overhead = ray_overhead(args.workers, 50)
    rollouts = [rollout_rate(src, "local", 0, args.rounds)]
    for n in (1, 2):
        rollouts += [rollout_rate(src, "local", n, args.rounds), rollout_rate(src, "ray", n, args.rounds)]
    med = {k: statistics.median(v) for k, v in walls.items()}
    runs = len(reports["local"]["arms"][0]["runs"]) * len(reports["local"]["arms"])
    result = {"project": str(src), "steps": args.steps, "seeds": args.seeds, "arms": args.arms, "runs": runs,
              "workers": args.workers, "repeats": args.repeats, "wall_s": walls, "wall_median_s": med,
              "ratio_ray_over_local": round(med["ray"] / med["local"], 3), "identical_numbers": same,
              "verdicts": {k: r["verdict"]["outcome"] for k, r in reports.items()},
              "scale": reports["ray"].get("scale"), **overhead, "rollouts": rollouts, "cpu": cpu_name(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()}}
    atomic_write_json(OUT, result)
    t = Table(title=f"bench on two backends: {runs} runs x {args.steps:,} steps ({args.arms}), {args.workers} at a "
                    f"time, {result['cpu']}", title_justify="left")
    for col in ("backend", "bench wall s (median)", "runs", "numbers"):
        t.add_column(col, justify="left" if col == "backend" else "right")
    t.add_row("local processes", f"{med['local']:.1f}", ", ".join(map(str, walls["local"])), "reference")
    t.add_row("Ray, local instance", f"{med['ray']:.1f}", ", ".join(map(str, walls["ray"])),
              "identical" if same else "DIFFERENT")
    Console().print(t)
    r = Table(title=f"PPO rollout per round ({load_project(src).config.task.num_envs} envs x 128 steps), "
                    f"median of {args.rounds} rounds", title_justify="left")
    for col in ("where", "shards", "round s", "env steps/s", "overhead per round"):
        r.add_column(col, justify="left" if col == "where" else "right")
    for row in rollouts:
        where = "in one piece, this process" if row["shards"] == 0 else (
            "local shard processes" if row["backend"] == "local" else "Ray actors")
        r.add_row(where, str(max(1, row["shards"])), f"{row['round_s_median']:.3f}", f"{row['env_steps_per_s']:,}",
                  f"{row['overhead_ms_median']:.1f} ms")
    Console().print(r)
    rt = overhead["empty_task_roundtrip_ms_p50"]
    Console().print(f"ray / local wall: {result['ratio_ray_over_local']:.2f}x (goal <= 1.2x); Ray start "
                    f"{overhead['ray_start_s']:.1f} s, empty task round trip {rt:.1f} ms p50; wrote {OUT}")


if __name__ == "__main__":
    main()
