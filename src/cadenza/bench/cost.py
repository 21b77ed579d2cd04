"""Pricing a training run (pure functions).

A run on a GPU (``cuda`` or ``mps``) holds the accelerator for its whole wall-clock time, so it is
priced in GPU-hours = wall seconds / 3600 at the GPU rate. A run on the CPU is priced by the cores it
actually kept busy: CPU core-hours = process CPU seconds / 3600 at the per-core rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GPU_HOURS = "GPU-hours"
CPU_CORE_HOURS = "CPU core-hours"


@dataclass(frozen=True)
class Rates:
    gpu_per_hour: float
    cpu_core_per_hour: float

    def __post_init__(self) -> None:
        for name, v in (("cost per GPU-hour", self.gpu_per_hour), ("cost per CPU core-hour", self.cpu_core_per_hour)):
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")


@dataclass(frozen=True)
class RunCost:
    device_hours: float
    unit: str  # GPU_HOURS or CPU_CORE_HOURS
    rate_per_hour: float
    dollars: float

    def as_dict(self) -> dict:
        return asdict(self)


def on_gpu(device: str) -> bool:
    return device.split(":")[0] in ("cuda", "mps")


def device_hours(device: str, wall_s: float, cpu_s: float) -> tuple[float, str]:
    """Hours of the device the run was charged for, and their unit."""
    if wall_s < 0 or cpu_s < 0:
        raise ValueError(f"times must be >= 0, got wall {wall_s} s, cpu {cpu_s} s")
    if on_gpu(device):
        return wall_s / 3600.0, GPU_HOURS
    return cpu_s / 3600.0, CPU_CORE_HOURS


def run_cost(device: str, wall_s: float, cpu_s: float, rates: Rates) -> RunCost:
    hours, unit = device_hours(device, wall_s, cpu_s)
    rate = rates.gpu_per_hour if unit == GPU_HOURS else rates.cpu_core_per_hour
    return RunCost(device_hours=hours, unit=unit, rate_per_hour=rate, dollars=hours * rate)


def cost_at(dollars: float, env_steps: int, at_steps: float) -> float:
    """The share of a run's cost spent by ``at_steps`` env steps (the run's own dollars per env step)."""
    if env_steps <= 0:
        raise ValueError(f"env_steps must be > 0, got {env_steps}")
    return dollars * min(at_steps, env_steps) / env_steps
