"""Build the task a project asks for (proxy by default, the real simulator with ``--real``)."""

from __future__ import annotations

from typing import Literal

from cadenza.project.config import ConfigError, Project
from cadenza.tasks.episodes import episode_factory
from cadenza.tasks.interface import Task


def make_task(project: Project, *, num_envs: int | None = None, level: float | None = None,
              real: bool = False, reward: Literal["sparse", "dense"] = "sparse", seed: int = 0) -> Task:
    cfg = project.config.task
    n = num_envs or cfg.num_envs
    lv = cfg.level if level is None else level
    if real:
        try:
            from cadenza.tasks.real import make_real_task
        except ImportError as e:
            raise ConfigError(f"--real needs the sim extra (MuJoCo): pip install -e '.[sim]' ({e})") from None
        return make_real_task(project, num_envs=n, level=lv, reward=reward, seed=seed)
    if cfg.episodes != "dash":  # another layer's episodes on this task (tasks/episodes.py)
        factory = episode_factory(cfg.id, cfg.episodes)
        if factory is not None:
            return factory(project, num_envs=n, level=lv, reward=reward, seed=seed)
    if cfg.id == "proxy:rescue-dog":
        from cadenza.tasks.proxy.rescue_dog import RescueDogProxy

        return RescueDogProxy(num_envs=n, level=lv, reward=reward, arrival=cfg.arrival)
    raise ConfigError(f"{project.root / 'cadenza.toml'}: key 'task.id': {cfg.id!r} has no proxy task; "
                      "run the command with --real (it uses [task.real])")


def base_source(project: Project, real: bool = False) -> str:
    if real:
        src = project.config.task.real.base
        if not src:
            raise ConfigError(f"{project.root / 'cadenza.toml'}: key 'task.real.base': required for --real")
        return src
    return project.config.base.source
