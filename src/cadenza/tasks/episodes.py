"""Episode kinds: who builds a proxy task when ``[task] episodes`` is not the task's own episodes.

``tasks/`` sits below the layers that use it and never imports them. A layer that turns a proxy task
into another kind of episode (the mission layer's whole missions, ``[task] episodes = "mission"``)
registers a factory here under ``(task id, episodes)``; :func:`cadenza.tasks.factory.make_task` looks
it up. A factory is a callable or a ``"module:attr"`` string, imported on first use (so registering
one costs nothing), called as ``factory(project, num_envs=, level=, reward=, seed=)``.

The built-in registrations are made when ``cadenza`` is imported (``cadenza/__init__.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

EpisodeFactory = Callable[..., Any]

_FACTORIES: dict[tuple[str, str], EpisodeFactory | str] = {}


def register_episodes(task_id: str, episodes: str, factory: EpisodeFactory | str) -> None:
    """Make ``factory`` build ``task_id`` when a project asks for ``[task] episodes = episodes``."""
    _FACTORIES[(task_id, episodes)] = factory


def episode_factory(task_id: str, episodes: str) -> EpisodeFactory | None:
    """The factory registered for ``(task_id, episodes)``, imported if it was given by name; else None."""
    factory = _FACTORIES.get((task_id, episodes))
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _FACTORIES[(task_id, episodes)] = factory
    return factory
