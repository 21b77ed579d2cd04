"""Score a policy on fresh episodes: success, collisions, return and residual sanity metrics.

Every env in a chunk runs exactly one episode from the same seeded start, so the candidate, the base
alone and the current baseline are scored on the same episode layouts and robots (paired: the
per-episode outcomes are kept). Chunk ``c`` resets with ``cadenza.governance.seeds.chunk_seed(seed,
first_chunk + c)``, so a sequential scorecard can draw the next episodes of a block where the last
look stopped, and :func:`merge` adds them up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from cadenza.governance.seeds import chunk_seed
from cadenza.residual.policy import ResidualController
from cadenza.tasks.interface import Task


@dataclass
class EvalStats:
    label: str
    task: str
    level: float
    episodes: int
    successes: int
    collisions: int
    mean_return: float
    mean_length: float
    mean_abs_delta: float = 0.0  # |gate * delta| after the rate limit, as a share of its bound
    max_abs_delta: float = 0.0
    clamp_share: float = 0.0  # action components the bounds cut because of the residual
    smoothness: float = 0.0  # mean |a_t - a_{t-1}| per component
    non_finite: int = 0
    comp_steps: int = 0  # action components stepped (the weight of the per-component means)
    chunks: int = 0  # env chunks run (the next draw of the same block starts at this chunk)
    success: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)  # per episode
    collision: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def collision_rate(self) -> float:
        return self.collisions / self.episodes if self.episodes else 0.0

    @property
    def env_steps(self) -> int:
        """The env steps these episodes took (the sum of their lengths): what scoring cost the simulator."""
        return round(self.mean_length * self.episodes)

    def counts(self) -> tuple[int, int, int]:
        return self.episodes, self.successes, self.collisions

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("success", "collision")}
        d["success_rate"], d["collision_rate"] = self.success_rate, self.collision_rate
        return d


def merge(a: EvalStats | None, b: EvalStats) -> EvalStats:
    """The stats of ``a``'s episodes followed by ``b``'s (means weighted by episodes / components)."""
    if a is None or a.episodes == 0:
        return b
    n, c = a.episodes + b.episodes, max(a.comp_steps + b.comp_steps, 1)

    def wmean(x: float, y: float, wx: int, wy: int) -> float:
        return (x * wx + y * wy) / max(wx + wy, 1)

    return EvalStats(
        label=a.label, task=a.task, level=a.level, episodes=n, successes=a.successes + b.successes,
        collisions=a.collisions + b.collisions, mean_return=wmean(a.mean_return, b.mean_return, a.episodes, b.episodes),
        mean_length=wmean(a.mean_length, b.mean_length, a.episodes, b.episodes),
        mean_abs_delta=(a.mean_abs_delta * a.comp_steps + b.mean_abs_delta * b.comp_steps) / c,
        max_abs_delta=max(a.max_abs_delta, b.max_abs_delta),
        clamp_share=(a.clamp_share * a.comp_steps + b.clamp_share * b.comp_steps) / c,
        smoothness=(a.smoothness * a.comp_steps + b.smoothness * b.comp_steps) / c,
        non_finite=a.non_finite + b.non_finite, comp_steps=a.comp_steps + b.comp_steps, chunks=a.chunks + b.chunks,
        success=np.concatenate([a.success, b.success]), collision=np.concatenate([a.collision, b.collision]),
    )


def evaluate(make_task: Callable[[int], Task], base: Callable[[np.ndarray], np.ndarray] | None,
             controller: ResidualController | None, *, episodes: int, seed: int, chunk: int = 500,
             label: str = "policy", first_chunk: int = 0) -> EvalStats:
    """Run ``episodes`` episodes (in chunks of ``chunk`` envs) with the deterministic policy."""
    succ = coll = 0
    ret_sum = len_sum = 0.0
    abs_sum = clamp_sum = smooth_sum = 0.0
    comp_steps = 0
    max_abs = 0.0
    non_finite = 0
    task_label, level = "", 0.0
    done_eps = 0
    b = 0
    succ_ep: list[np.ndarray] = []
    coll_ep: list[np.ndarray] = []
    while done_eps < episodes:
        n = min(chunk, episodes - done_eps)
        task = make_task(n)
        task_label, level = task.spec.label, task.level
        obs, _ = task.reset(seed=chunk_seed(seed, first_chunk + b))
        k = task.spec.act_dim
        if controller is not None:
            controller.reset()
        active = np.ones(n, dtype=bool)
        ep_ret = np.zeros(n)
        s_ep, c_ep = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        prev_a = None
        for t in range(task.spec.horizon + 1):
            a_base = base(obs) if base is not None else np.zeros((n, k))
            if controller is not None:
                a = controller.act(obs, a_base)
                d = controller.last_delta
                bad = ~np.isfinite(d)
                non_finite += int(bad[active].sum())
                d = np.where(bad, 0.0, d)
                ad = np.abs(d[active])
                abs_sum += float(ad.sum())
                max_abs = max(max_abs, float(ad.max(initial=0.0)))
                if controller.arch.use_base:
                    raw = a_base + controller.arch.alpha * d
                    clamp_sum += float((np.abs(raw[active]) > 1.0).sum())
                a = np.where(np.isfinite(a), a, a_base)
            else:
                a = a_base
            if prev_a is not None:
                smooth_sum += float(np.abs(a - prev_a)[active].sum())
            comp_steps += int(active.sum()) * k
            prev_a = a
            obs, r, term, trunc, info = task.step(a)
            ep_ret += np.where(active, r, 0.0)
            done = (term | trunc) & active
            if done.any():
                succ += int(info["success"][done].sum())
                coll += int(info["collision"][done].sum())
                s_ep[done] = info["success"][done]
                c_ep[done] = info["collision"][done]
                len_sum += float(t + 1) * int(done.sum())
                if controller is not None:
                    controller.reset(done)
            active &= ~(term | trunc)
            if not active.any():
                break
        ret_sum += float(ep_ret.sum())
        succ_ep.append(s_ep)
        coll_ep.append(c_ep)
        task.close()
        done_eps += n
        b += 1
    comp = max(comp_steps, 1)
    return EvalStats(
        label=label, task=task_label, level=level, episodes=episodes, successes=succ, collisions=coll,
        mean_return=ret_sum / episodes, mean_length=len_sum / episodes, mean_abs_delta=abs_sum / comp,
        max_abs_delta=max_abs, clamp_share=clamp_sum / comp, smoothness=smooth_sum / comp, non_finite=non_finite,
        comp_steps=comp_steps, chunks=b, success=np.concatenate(succ_ep) if succ_ep else np.zeros(0, bool),
        collision=np.concatenate(coll_ep) if coll_ep else np.zeros(0, bool),
    )
