"""Dry-run profiling of a residual head: parameters, per-step latency, throughput, peak memory."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from cadenza.residual.network import ResidualActor, count_params


@dataclass
class Profile:
    params: int
    latency_p50_us: float
    latency_p99_us: float
    batch: int
    throughput_obs_per_s: float
    model_bytes: int
    activation_bytes_at_batch: int
    peak_memory_bytes: int
    peak_memory_source: str

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def profile_actor(actor: ResidualActor, device: str, iters: int = 2000, warmup: int = 200,
                  batch: int = 1024) -> Profile:
    actor = actor.to(device).eval()
    arch = actor.arch
    obs1 = torch.zeros(1, arch.obs_dim, device=device)
    base1 = torch.zeros(1, arch.act_dim, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(warmup):
        actor(obs1, base1)
    _sync(device)
    times = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter_ns()
        actor(obs1, base1)
        _sync(device)
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    obsb = torch.randn(batch, arch.obs_dim, device=device)
    baseb = torch.zeros(batch, arch.act_dim, device=device)
    for _ in range(5):
        actor(obsb, baseb)
    _sync(device)
    reps = 50
    t0 = time.perf_counter()
    for _ in range(reps):
        actor(obsb, baseb)
    _sync(device)
    thr = reps * batch / (time.perf_counter() - t0)
    model_bytes = sum(t.numel() * t.element_size() for t in list(actor.parameters()) + list(actor.buffers()))
    act_bytes = batch * (arch.input_dim + arch.hidden_dim * arch.layers * 2 + arch.out_dim) * 4
    if device == "cuda":
        peak, src = int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    else:
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(int(rss1 - rss0), model_bytes + act_bytes)
        src = "process peak RSS growth during profiling (floor: model + activations)"
    return Profile(
        params=count_params(actor), latency_p50_us=float(np.percentile(times, 50)),
        latency_p99_us=float(np.percentile(times, 99)), batch=batch, throughput_obs_per_s=float(thr),
        model_bytes=int(model_bytes), activation_bytes_at_batch=int(act_bytes), peak_memory_bytes=peak,
        peak_memory_source=src,
    )


def env_step_seconds(task: Any, base: Any, steps: int = 50) -> float:
    """Wall seconds of one env step of ``task`` (one env) with ``base`` acting: the median over ``steps`` steps
    after a reset, so a slow first step (a simulator's lazy set-up) does not count. What ``algorithm = "auto"``
    reads (:func:`cadenza.governance.governor.choose_algorithm`)."""
    obs, _ = task.reset(seed=0)
    times = np.empty(steps)
    for i in range(steps):
        a = base(obs)
        t0 = time.perf_counter()
        obs, *_ = task.step(a)
        times[i] = time.perf_counter() - t0
    return float(np.median(times))
