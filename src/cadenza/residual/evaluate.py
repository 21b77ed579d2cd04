"""Score a policy on fresh episodes: success, collisions, return and residual sanity metrics.

Every env in a batch runs exactly one episode from the same seeded start, so the candidate, the base
alone and the current baseline are scored on the same episode layouts and robots (paired).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

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

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def collision_rate(self) -> float:
        return self.collisions / self.episodes if self.episodes else 0.0

    def counts(self) -> tuple[int, int, int]:
        return self.episodes, self.successes, self.collisions

    def as_dict(self) -> dict:
        d = asdict(self)
        d["success_rate"], d["collision_rate"] = self.success_rate, self.collision_rate
        return d


def evaluate(make_task: Callable[[int], Task], base: Callable[[np.ndarray], np.ndarray] | None,
             controller: ResidualController | None, *, episodes: int, seed: int, chunk: int = 500,
             label: str = "policy") -> EvalStats:
    """Run ``episodes`` episodes (in batches of ``chunk`` envs) with the deterministic policy."""
    succ = coll = 0
    ret_sum = len_sum = 0.0
    abs_sum = clamp_sum = smooth_sum = 0.0
    comp_steps = 0
    max_abs = 0.0
    non_finite = 0
    task_label, level = "", 0.0
    done_eps = 0
    b = 0
    while done_eps < episodes:
        n = min(chunk, episodes - done_eps)
        task = make_task(n)
        task_label, level = task.spec.label, task.level
        obs, _ = task.reset(seed=seed + 7919 * b)
        k = task.spec.act_dim
        if controller is not None:
            controller.reset()
        active = np.ones(n, dtype=bool)
        ep_ret = np.zeros(n)
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
                len_sum += float(t + 1) * int(done.sum())
                if controller is not None:
                    controller.reset(done)
            active &= ~(term | trunc)
            if not active.any():
                break
        ret_sum += float(ep_ret.sum())
        task.close()
        done_eps += n
        b += 1
    comp = max(comp_steps, 1)
    return EvalStats(
        label=label, task=task_label, level=level, episodes=episodes, successes=succ, collisions=coll,
        mean_return=ret_sum / episodes, mean_length=len_sum / episodes, mean_abs_delta=abs_sum / comp,
        max_abs_delta=max_abs, clamp_share=clamp_sum / comp, smoothness=smooth_sum / comp, non_finite=non_finite,
    )
