"""Paired evaluation episodes: every policy runs the same seeded episodes, one episode per env.

The seeding is the one ``cadenza.residual.evaluate`` uses (chunk ``c`` of ``chunk`` envs resets with
``cadenza.governance.seeds.chunk_seed(seed, first_chunk + c)``), so on the same held-out block the
teacher here meets exactly the episodes a residual scorecard of that block was computed on. Per-episode
outcomes are kept, because the student is compared with its teacher episode by episode (a paired comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cadenza.governance.seeds import chunk_seed
from cadenza.governance.stats import wilson
from cadenza.tasks.interface import Task


@dataclass
class Outcomes:
    label: str
    task: str
    level: float
    success: np.ndarray  # bool per episode
    collision: np.ndarray  # bool per episode
    returns: np.ndarray
    lengths: np.ndarray
    non_finite: int = 0  # action components that were NaN / inf (replaced by 0 before stepping)
    out_of_bounds: int = 0  # action components outside the task's bounds
    chunks: int = 0  # env chunks run (the next draw of the same block starts at this chunk)

    def extend(self, more: Outcomes) -> Outcomes:
        """These episodes followed by ``more``'s."""
        return Outcomes(label=self.label, task=self.task or more.task, level=self.level,
                        success=np.concatenate([self.success, more.success]),
                        collision=np.concatenate([self.collision, more.collision]),
                        returns=np.concatenate([self.returns, more.returns]),
                        lengths=np.concatenate([self.lengths, more.lengths]),
                        non_finite=self.non_finite + more.non_finite,
                        out_of_bounds=self.out_of_bounds + more.out_of_bounds, chunks=self.chunks + more.chunks)

    @property
    def episodes(self) -> int:
        return int(self.success.size)

    @property
    def successes(self) -> int:
        return int(self.success.sum())

    @property
    def collisions(self) -> int:
        return int(self.collision.sum())

    def counts(self) -> tuple[int, int, int]:
        return self.episodes, self.successes, self.collisions

    def as_dict(self) -> dict:
        n = max(self.episodes, 1)
        lo, hi = wilson(self.successes, self.episodes)
        return {"label": self.label, "task": self.task, "level": self.level, "episodes": self.episodes,
                "successes": self.successes, "collisions": self.collisions, "success_rate": self.successes / n,
                "success_interval": [lo, hi], "collision_rate": self.collisions / n,
                "mean_return": float(self.returns.mean()) if self.episodes else 0.0,
                "mean_length": float(self.lengths.mean()) if self.episodes else 0.0,
                "non_finite": self.non_finite, "out_of_bounds": self.out_of_bounds}


def run_episodes(make_task: Callable[[int], Task], act: Callable[[np.ndarray], np.ndarray], *, episodes: int,
                 seed: int, chunk: int = 500, label: str = "policy",
                 reset: Callable[[np.ndarray | None], None] | None = None,
                 keep_obs: int = 0, first_chunk: int = 0) -> tuple[Outcomes, np.ndarray]:
    """Run ``episodes`` episodes of ``act`` (``obs[N, d] -> action[N, k]``); ``reset(mask)`` clears any
    per-env state of a stateful policy. Also returns up to ``keep_obs`` observations it met."""
    succ, coll, rets, lens = [], [], [], []
    kept: list[np.ndarray] = []
    non_finite = out_of_bounds = 0
    task_label, level = "", 0.0
    done_eps, b = 0, 0
    while done_eps < episodes:
        n = min(chunk, episodes - done_eps)
        task = make_task(n)
        task_label, level = task.spec.label, task.level
        low, high = task.spec.action_low, task.spec.action_high
        obs, _ = task.reset(seed=chunk_seed(seed, first_chunk + b))
        if reset is not None:
            reset(None)
        active = np.ones(n, dtype=bool)
        s, c = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        ret, length = np.zeros(n), np.zeros(n)
        for t in range(task.spec.horizon + 1):
            if sum(len(k) for k in kept) < keep_obs:
                kept.append(obs[active].astype(np.float32))
            a = np.asarray(act(obs), dtype=np.float64)
            bad = ~np.isfinite(a)
            non_finite += int(bad[active].sum())
            a = np.where(bad, 0.0, a)
            out_of_bounds += int(((a < low - 1e-6) | (a > high + 1e-6))[active].sum())
            obs, r, term, trunc, info = task.step(a)
            ret += np.where(active, r, 0.0)
            done = (term | trunc) & active
            if done.any():
                s[done] = info["success"][done]
                c[done] = info["collision"][done]
                length[done] = t + 1
                if reset is not None:
                    reset(done)
            active &= ~(term | trunc)
            if not active.any():
                break
        task.close()
        succ.append(s)
        coll.append(c)
        rets.append(ret)
        lens.append(length)
        done_eps += n
        b += 1
    obs_kept = np.concatenate(kept)[:keep_obs] if kept else np.zeros((0, 0), dtype=np.float32)
    return Outcomes(label=label, task=task_label, level=level, success=np.concatenate(succ),
                    collision=np.concatenate(coll), returns=np.concatenate(rets), lengths=np.concatenate(lens),
                    non_finite=non_finite, out_of_bounds=out_of_bounds, chunks=b), obs_kept
