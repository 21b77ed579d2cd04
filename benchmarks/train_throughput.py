"""Training throughput: cadenza's residual PPO against Stable-Baselines3 PPO on the same proxy task.

Both train on ``proxy:rescue-dog`` at level 1.0 with the same number of parallel envs, rollout length,
minibatch size and epochs, for the same number of env steps (rollout + update, wall clock, one process).
SB3 runs on the Gymnasium single-env API (``cadenza/RescueDog-v0``) through its ``DummyVecEnv``, as a
user's existing full-RL stack would. The two are alternated ``--repeats`` times and the medians compared,
per wall-clock second and per process-CPU second (the CPU rate is the steadier one on a shared machine).

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


def run_sb3(steps: int, envs: int, n_steps: int, minibatch: int, epochs: int) -> tuple[float, float] | None:
    try:
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        return None
    env = make_vec_env("cadenza/RescueDog-v0", n_envs=envs, seed=0, env_kwargs={"level": 1.0})
    model = SB3PPO("MlpPolicy", env, n_steps=n_steps, batch_size=minibatch, n_epochs=epochs, seed=0, verbose=0,
                   device="cpu", policy_kwargs={"net_arch": [64, 64]})
    wall, cpu = _timed(lambda: model.learn(total_timesteps=steps))
    return model.num_timesteps / wall, model.num_timesteps / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=32768, help="env steps per run (default 32768)")
    ap.add_argument("--envs", type=int, default=64, help="parallel envs for both (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_steps, minibatch, epochs = 128, 2048, 10
    ours, sb3, ours_cpu, sb3_cpu = [], [], [], []
    for _ in range(args.repeats):
        w, c = run_cadenza(args.steps, args.envs, n_steps, minibatch, epochs)
        ours.append(w)
        ours_cpu.append(c)
        s = run_sb3(args.steps, args.envs, n_steps, minibatch, epochs)
        if s is not None:
            sb3.append(s[0])
            sb3_cpu.append(s[1])
    med_ours, med_ours_cpu = statistics.median(ours), statistics.median(ours_cpu)
    med_sb3 = statistics.median(sb3) if sb3 else None
    med_sb3_cpu = statistics.median(sb3_cpu) if sb3_cpu else None
    result = {
        "task": "proxy", "steps": args.steps, "envs": args.envs, "n_steps": n_steps, "minibatch": minibatch,
        "epochs": epochs, "hidden": [64, 64], "threads": args.threads, "repeats": args.repeats,
        "cadenza_steps_per_s": ours, "sb3_steps_per_s": sb3, "cadenza_median": med_ours, "sb3_median": med_sb3,
        "ratio": (med_ours / med_sb3) if med_sb3 else None,
        "cadenza_steps_per_cpu_s": ours_cpu, "sb3_steps_per_cpu_s": sb3_cpu, "cadenza_cpu_median": med_ours_cpu,
        "sb3_cpu_median": med_sb3_cpu, "ratio_cpu": (med_ours_cpu / med_sb3_cpu) if med_sb3_cpu else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    t = Table(title=f"training env-steps/s \\[proxy], {args.envs} envs, {args.steps:,} steps, median of {args.repeats}")
    t.add_column("trainer")
    t.add_column("per wall s", justify="right")
    t.add_column("per CPU s", justify="right")
    t.add_column("runs (wall)", justify="right")
    t.add_row("cadenza residual PPO", f"{med_ours:,.0f}", f"{med_ours_cpu:,.0f}", ", ".join(f"{x:,.0f}" for x in ours))
    if med_sb3 and med_sb3_cpu:
        t.add_row("Stable-Baselines3 PPO", f"{med_sb3:,.0f}", f"{med_sb3_cpu:,.0f}",
                  ", ".join(f"{x:,.0f}" for x in sb3))
    Console().print(t)
    if med_sb3 and med_sb3_cpu:
        Console().print(
            f"ratio: {med_ours / med_sb3:.1f}x SB3 per wall second, {med_ours_cpu / med_sb3_cpu:.1f}x per CPU "
            f"second (goal >= 10x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    else:
        Console().print("stable-baselines3 not installed: install the bench extra for the comparison")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
