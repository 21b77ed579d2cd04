"""What a rollout counts about the episodes that end in it (PPO, SAC and the rollout shards share it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class EpisodeTally:
    episodes: int = 0
    successes: int = 0
    collisions: int = 0
    return_sum: float = 0.0

    def add(self, done: np.ndarray, info: dict[str, Any]) -> None:
        """Count the envs whose episode ended at this step (``done``), from the task's ``info``."""
        if done.any():
            self.episodes += int(done.sum())
            self.successes += int(info["success"][done].sum())
            self.collisions += int(info["collision"][done].sum())
            self.return_sum += float(info["episode"]["r"][done].sum())

    @property
    def mean_return(self) -> float:
        return self.return_sum / self.episodes if self.episodes else float("nan")


def charge_collisions(r: np.ndarray, done: np.ndarray, info: dict[str, Any], cost: float) -> None:
    """The collision multiplier's extra cost, on the rewards of the steps that ended in a collision (in place)."""
    if cost and done.any():
        r[done & info["collision"]] -= cost
