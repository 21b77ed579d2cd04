"""Training throughput: cadenza's residual PPO against Stable-Baselines3 PPO on the same proxy task.

Both train on ``proxy:rescue-dog`` at level 1.0 with the same number of parallel envs, rollout length,
minibatch size and epochs, for the same number of env steps (rollout + update, wall clock, one process).
SB3 runs twice: on the same batched task through ``cadenza.bench.sb3_adapter.TaskVecEnv`` (a native
``VecEnv``: the env cost is the same as ours, so the ratio is the trainers' alone; the headline), and on
the Gymnasium single-env API (``cadenza/RescueDog-v0``) through its ``DummyVecEnv``, as a user's existing
full-RL stack would. The arms are alternated ``--repeats`` times and the medians compared, per
wall-clock second and per process-CPU second (the CPU rate is the steadier one on a shared machine).

    .venv/bin/python benchmarks/train_throughput.py [--steps 32768] [--envs 64] [--repeats 3]

Writes ``benchmarks/results/train_throughput.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import cadenza  # noqa: F401  (registers cadenza/RescueDog-v0)
from cadenza.accel.hardware import cpu_name
from cadenza.base.rescue_dog import RescueDogBase
from cadenza.residual.network import ResidualArch
from cadenza.residual.ppo import PPO, PPOConfig
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy

OUT = Path(__file__).parent / "results" / "train_throughput.json"


def _timed(fn: object) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - w, time.process_time() - c


def run_cadenza(steps: int, envs: int, n_steps: int, minibatch: int, epochs: int) -> tuple[float, float]:
    cfg = PPOConfig(num_envs=envs, n_steps=n_steps, minibatch_size=minibatch, epochs=epochs, target_kl=None)
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=64)
    ppo = PPO(arch, cfg, RescueDogProxy(num_envs=envs, level=1.0), RescueDogBase(), seed=0)
    done = 0

    def train() -> None:
        nonlocal done
        while done < steps:
            done += ppo.round().env_steps

    wall, cpu = _timed(train)
    return done / wall, done / cpu


def run_sb3(steps: int, envs: int, n_steps: int, minibatch: int, epochs: int,
            native: bool) -> tuple[float, float] | None:
    """SB3 PPO; ``native``: on the batched task through ``TaskVecEnv`` (the env cost ours pays), else through
    ``DummyVecEnv`` over single Gymnasium envs (what a user's existing stack would run)."""
    try:
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        return None
    if native:
        from cadenza.bench.sb3_adapter import TaskVecEnv

        env = TaskVecEnv(RescueDogProxy(num_envs=envs, level=1.0))
        env.seed(0)
    else:
        env = make_vec_env("cadenza/RescueDog-v0", n_envs=envs, seed=0, env_kwargs={"level": 1.0})
    model = SB3PPO("MlpPolicy", env, n_steps=n_steps, batch_size=minibatch, n_epochs=epochs, seed=0, verbose=0,
                   device="cpu", policy_kwargs={"net_arch": [64, 64]})
    wall, cpu = _timed(lambda: model.learn(total_timesteps=steps))
    return model.num_timesteps / wall, model.num_timesteps / cpu


ARMS = {"cadenza": "cadenza residual PPO (batched task)",
        "sb3_native": "Stable-Baselines3 PPO, batched task (TaskVecEnv)",
        "sb3_dummy": "Stable-Baselines3 PPO, DummyVecEnv over single envs"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=32768, help="env steps per run (default 32768)")
    ap.add_argument("--envs", type=int, default=64, help="parallel envs for all arms (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for all arms (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_steps, minibatch, epochs = 128, 2048, 10
    wall: dict[str, list[float]] = {k: [] for k in ARMS}
    cpu: dict[str, list[float]] = {k: [] for k in ARMS}
    for _ in range(args.repeats):  # the arms alternate, so a change in machine load hits all of them
        runs = {"cadenza": run_cadenza(args.steps, args.envs, n_steps, minibatch, epochs),
                "sb3_native": run_sb3(args.steps, args.envs, n_steps, minibatch, epochs, native=True),
                "sb3_dummy": run_sb3(args.steps, args.envs, n_steps, minibatch, epochs, native=False)}
        for k, r in runs.items():
            if r is not None:
                wall[k].append(r[0])
                cpu[k].append(r[1])
    med = {k: statistics.median(v) for k, v in wall.items() if v}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    ratios = {k: {"wall": med["cadenza"] / med[k], "cpu": med_cpu["cadenza"] / med_cpu[k]}
              for k in ("sb3_native", "sb3_dummy") if k in med}
    result = {
        "task": "proxy", "steps": args.steps, "envs": args.envs, "n_steps": n_steps, "minibatch": minibatch,
        "epochs": epochs, "hidden": [64, 64], "threads": args.threads, "repeats": args.repeats,
        "arms": {k: {"label": ARMS[k], "steps_per_s": wall[k], "steps_per_cpu_s": cpu[k],
                     "median": med.get(k), "cpu_median": med_cpu.get(k)} for k in ARMS},
        # the headline: against SB3 on the same batched task (equal env cost)
        "ratio": ratios.get("sb3_native", {}).get("wall"), "ratio_cpu": ratios.get("sb3_native", {}).get("cpu"),
        "ratios": ratios, "cpu": cpu_name(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    t = Table(title=f"training env-steps/s \\[proxy], {args.envs} envs, {args.steps:,} steps, median of "
                    f"{args.repeats}, {result['cpu']}, {args.threads} thread(s)")
    for col, just in (("trainer", "left"), ("per wall s", "right"), ("per CPU s", "right"),
                      ("cadenza / this (wall, CPU)", "right"), ("runs (wall)", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for k, label in ARMS.items():
        if k not in med:
            continue
        ratio = "" if k == "cadenza" else f"{ratios[k]['wall']:.1f}x, {ratios[k]['cpu']:.1f}x"
        t.add_row(label, f"{med[k]:,.0f}", f"{med_cpu[k]:,.0f}", ratio, ", ".join(f"{x:,.0f}" for x in wall[k]))
    Console().print(t)
    if "sb3_native" not in med:
        Console().print("stable-baselines3 not installed: install the bench extra for the comparison")
    Console().print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
