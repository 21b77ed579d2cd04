"""DAgger's collection rounds in shards (``env distill --rollout-workers N``, N > 1).

Each shard (:class:`DaggerShard`, hosted by :class:`cadenza.scale.shards.ShardWorkers`: a spawned local
process or a Ray actor) owns ``envs / N`` of the collection envs (``np.array_split`` sizes), its own
teacher (the same base and residual version, loaded from the project) and a copy of the student. Per
round it gets the student's weights once (none in round 0: the teacher drives), rolls out the
beta-mixture and returns the :class:`cadenza.distill.dagger.Rollout`; the driver concatenates the
shards' rollouts along the env axis in shard order and fits. Shard i resets its envs with seed
``SeedSequence(round_seed).spawn(N)[i]`` and draws its mixture from a generator with the same seed, so
the same seed and N give the same student on either backend; N = 1 collects in one piece, in this
process, with other numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.distill.dagger import Rollout, collect, load_teacher, student_actor
from cadenza.distill.student import Student, StudentArch
from cadenza.residual.rollout import shard_seeds, shard_sizes


@dataclass(frozen=True)
class DaggerShardSpec:
    project_root: str
    real: bool
    level: float
    num_envs: int
    task_seed: int
    index: int  # which shard (its place in every round's SeedSequence spawn)
    shards: int
    teacher_kind: str
    residual_version: str | None
    arch: StudentArch


def shard_specs(project_root: str, *, real: bool, level: float, envs: int, task_seed: int, shards: int,
                teacher: dict[str, Any], arch: StudentArch) -> list[DaggerShardSpec]:
    return [DaggerShardSpec(project_root=project_root, real=real, level=level, num_envs=n, task_seed=task_seed,
                            index=i, shards=shards, teacher_kind=teacher["kind"],
                            residual_version=teacher["residual_version"], arch=arch)
            for i, n in enumerate(shard_sizes(envs, shards))]


class DaggerShard:
    def __init__(self, spec: DaggerShardSpec) -> None:
        from cadenza.project.config import load_project
        from cadenza.tasks.factory import make_task

        project = load_project(Path(spec.project_root))
        self.spec = spec
        self.task = make_task(project, num_envs=spec.num_envs, level=spec.level, real=spec.real, seed=spec.task_seed)
        self.teacher = load_teacher(project, kind=spec.teacher_kind, residual_version=spec.residual_version,
                                    real=spec.real, obs_dim=spec.arch.obs_dim, act_dim=spec.arch.act_dim)
        self.student = Student(spec.arch)

    def collect(self, student_state: dict[str, torch.Tensor] | None, beta: float, steps: int,
                round_seed: int) -> Rollout:
        seed = shard_seeds(round_seed, self.spec.shards)[self.spec.index]
        driver = None
        if student_state is not None:
            self.student.load_state_dict(student_state)
            driver = student_actor(self.student)
        return collect(self.task, self.teacher, driver, beta=beta, steps=steps, seed=seed,
                       rng=np.random.default_rng(seed))

    def close(self) -> None:
        self.task.close()


def merge(parts: list[Rollout]) -> Rollout:
    """The shards' rollouts as one, envs concatenated in shard order."""
    n = [p.obs.shape[1] for p in parts]
    episodes = sum(p.episodes for p in parts)
    successes = sum(round(p.success_rate * p.episodes) for p in parts if p.episodes)
    return Rollout(obs=np.concatenate([p.obs for p in parts], axis=1),
                   labels=np.concatenate([p.labels for p in parts], axis=1),
                   actions=np.concatenate([p.actions for p in parts], axis=1),
                   done=np.concatenate([p.done for p in parts], axis=1),
                   student_share=sum(p.student_share * k for p, k in zip(parts, n, strict=True)) / sum(n),
                   episodes=episodes, success_rate=successes / episodes if episodes else float("nan"))
