"""The built-in real tasks: ``builtin:reacher`` and ``builtin:rescue-dog``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from cadenza.project.config import PerturbationSpec


@dataclass(frozen=True)
class BuiltinTask:
    name: str
    make_env: Callable[..., gym.Env]
    perturbations: tuple[PerturbationSpec, ...]
    base: str  # the built-in base tuned for it


def _reacher(**kwargs: Any) -> gym.Env:
    from cadenza.tasks.real.reacher import make_env

    return make_env(**kwargs)


def _rescue_dog(**kwargs: Any) -> gym.Env:
    from cadenza.tasks.real.rescue_dog import make_env

    return make_env(**kwargs)


def builtin_tasks() -> dict[str, BuiltinTask]:
    from cadenza.tasks.real import reacher, rescue_dog

    return {
        "reacher": BuiltinTask("reacher", _reacher, reacher.PERTURBATIONS, "builtin:reacher-pd"),
        "rescue-dog": BuiltinTask("rescue-dog", _rescue_dog, rescue_dog.PERTURBATIONS, "builtin:rescue-dog-gait"),
    }
