"""Gymnasium registration of cadenza's built-in tasks (done when ``cadenza`` is imported)."""

from __future__ import annotations

import gymnasium as gym

RESCUE_DOG_ID = "cadenza/RescueDog-v0"


def register_gymnasium_envs() -> None:
    if RESCUE_DOG_ID in gym.registry:
        return
    gym.register(
        id=RESCUE_DOG_ID,
        entry_point="cadenza.tasks.proxy.rescue_dog:RescueDogEnv",
        vector_entry_point="cadenza.tasks.proxy.rescue_dog:RescueDogProxy",
        disable_env_checker=False,
    )
