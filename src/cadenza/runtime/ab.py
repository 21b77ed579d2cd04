"""A/B evaluation through the safe runtime: the residual switched on and off by episode.

This is the field protocol (run the correction on some episodes and not on others, compare success)
played on the task: each robot carries its own :class:`SafeRuntime`, flips its switch at every
episode boundary (robot ``j`` starts with the residual on when ``j`` is even), and every planned
episode runs to its end, so no arm loses its long episodes to a cut-off. The two arms are
independent samples: each success rate gets a Wilson interval and their difference a Newcombe
interval. The runtime's health over the whole run (fallbacks, latency) comes with the result.

Several robots step together only to share the task's vectorised step and one batched base call;
the base action is handed to each robot's runtime (``step(obs, a_base=...)``), which checks it and
adds the correction exactly as it would on a single robot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cadenza.governance.stats import diff_interval, wilson
from cadenza.runtime.health import HealthReport
from cadenza.runtime.safe import SafeRuntime, combined_health
from cadenza.tasks.interface import Task


@dataclass
class ArmStats:
    label: str
    episodes: int = 0
    successes: int = 0
    collisions: int = 0
    return_sum: float = 0.0
    length_sum: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def collision_rate(self) -> float:
        return self.collisions / self.episodes if self.episodes else 0.0

    def as_dict(self, confidence: float) -> dict[str, Any]:
        lo, hi = wilson(self.successes, self.episodes, confidence)
        return {**asdict(self), "success_rate": self.success_rate, "success_interval": [lo, hi],
                "collision_rate": self.collision_rate,
                "mean_return": self.return_sum / self.episodes if self.episodes else 0.0,
                "mean_length": self.length_sum / self.episodes if self.episodes else 0.0}


@dataclass
class ABResult:
    task: str
    level: float
    seed: int
    robots: int
    confidence: float
    on: ArmStats
    off: ArmStats
    health: HealthReport

    @property
    def difference(self) -> float:
        return self.on.success_rate - self.off.success_rate

    @property
    def difference_interval(self) -> tuple[float, float]:
        return diff_interval(self.on.successes, self.on.episodes, self.off.successes, self.off.episodes,
                             self.confidence)

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.difference_interval
        return {"kind": "cadenza.runtime.ab_report", "task": self.task, "level": self.level, "seed": self.seed,
                "robots": self.robots, "confidence": self.confidence,
                "protocol": "residual switched on/off by episode on each robot (alternating); independent arms",
                "arms": {"on": self.on.as_dict(self.confidence), "off": self.off.as_dict(self.confidence)},
                "difference": {"on_minus_off": self.difference, "interval": [lo, hi], "method": "Newcombe"},
                "runtime_health": self.health.as_dict(),
                "note": "the base ran batched over the robots and was handed to each runtime, so the step "
                        "latency here excludes the base"}


def plan_episodes(episodes_per_arm: int, robots: int) -> tuple[int, list[int]]:
    """Robots used (even) and episodes each runs, so that each arm gets exactly ``episodes_per_arm``.

    Robot ``j`` alternates arms starting with ``j % 2``; dropping the last episode of a pair of
    neighbouring robots (which would run opposite arms) keeps the arms equal.
    """
    if episodes_per_arm < 1:
        raise ValueError(f"episodes per arm must be >= 1, got {episodes_per_arm}")
    total = 2 * episodes_per_arm
    m = max(2, min(robots, total))
    m -= m % 2
    per = math.ceil(total / m)
    excess = m * per - total  # even: m even, total even
    return m, [per - 1 if j < excess else per for j in range(m)]


def run_ab(make_task: Callable[[int], Task], base: Callable[[np.ndarray], np.ndarray],
           make_runtime: Callable[[], SafeRuntime], *, episodes_per_arm: int, seed: int, robots: int = 100,
           confidence: float = 0.95) -> ABResult:
    """Alternate the correction on/off by episode on each robot; see the module docstring."""
    m, planned = plan_episodes(episodes_per_arm, robots)
    task = make_task(m)
    try:
        obs, _ = task.reset(seed=seed)
        runtimes = [make_runtime() for _ in range(m)]
        arm_on = np.array([j % 2 == 0 for j in range(m)])
        for j, rt in enumerate(runtimes):
            (rt.enable if arm_on[j] else rt.disable)()
        done_eps = np.zeros(m, dtype=int)
        todo = np.array(planned)
        ret = np.zeros(m)
        length = np.zeros(m, dtype=int)
        on, off = ArmStats("residual on"), ArmStats("off: base alone")
        active = done_eps < todo
        while active.any():
            a_base = np.asarray(base(obs), dtype=np.float64)
            actions = np.clip(a_base, task.spec.action_low, task.spec.action_high)
            for j in np.flatnonzero(active):
                actions[j] = runtimes[j].step(obs[j], a_base=a_base[j])
            obs, r, term, trunc, info = task.step(actions)
            ret += r
            length += 1
            ended = (term | trunc) & active
            for j in np.flatnonzero(ended):
                arm = on if arm_on[j] else off
                arm.episodes += 1
                arm.successes += int(info["success"][j])
                arm.collisions += int(info["collision"][j])
                arm.return_sum += float(ret[j])
                arm.length_sum += int(length[j])
                ret[j], length[j] = 0.0, 0
                done_eps[j] += 1
                arm_on[j] = not arm_on[j]
                rt = runtimes[j]
                rt.reset()
                (rt.enable if arm_on[j] else rt.disable)()
            ret[~active] = 0.0
            length[~active] = 0
            active = done_eps < todo
        label, level = task.spec.label, float(task.level)
    finally:
        task.close()
    health = combined_health(runtimes)
    for rt in runtimes:
        rt.close()
    return ABResult(task=label, level=level, seed=seed, robots=m, confidence=confidence, on=on, off=off,
                    health=health)
