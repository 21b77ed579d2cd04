"""The real-simulator seam: MuJoCo tasks (through Gymnasium) behind the cadenza Task protocol.

``[task.real]`` in ``cadenza.toml`` names the task: a built-in (``builtin:reacher``,
``builtin:rescue-dog``), a Gymnasium id (``Pendulum-v1``), or a ``module:attr`` env factory in the
user's own code (imported with the project directory on ``sys.path``). See ``docs/real.md``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cadenza.project.config import CONFIG_NAME, ConfigError, Project

if TYPE_CHECKING:
    import gymnasium as gym

    from cadenza.tasks.real.batched import RealTask

SIM_HINT = "--real needs MuJoCo, which is not installed: pip install -e '.[sim]'"

__all__ = ["SIM_HINT", "make_real_task", "require_sim"]


def require_sim() -> None:
    """Raise the one-line ConfigError when MuJoCo (the ``sim`` extra) is missing."""
    try:
        import mujoco  # noqa: F401
        from gymnasium.envs.mujoco import MujocoEnv  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{SIM_HINT} ({e})") from None


def _make_from_factory(factory: Any, kwargs: dict[str, Any], root: Path, spec: str) -> gym.Env:
    import gymnasium as gym

    from cadenza.tasks.real.entry import on_path

    kw = dict(kwargs)
    limit = kw.pop("max_episode_steps", None)
    with on_path(root):
        try:
            env = factory(**kw)
        except Exception as e:
            raise ConfigError(f"{root / CONFIG_NAME}: key 'task.real.task': env factory '{spec}' raised "
                              f"{type(e).__name__}: {e}") from None
    if not isinstance(env, gym.Env):
        raise ConfigError(f"{root / CONFIG_NAME}: key 'task.real.task': '{spec}' returned "
                          f"{type(env).__name__}, expected a gymnasium.Env")
    if limit is not None:
        env = gym.wrappers.TimeLimit(env, int(limit))
    return env


def _make_from_id(env_id: str, kwargs: dict[str, Any], where: Path) -> gym.Env:
    import gymnasium as gym

    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except gym.error.Error as e:
        raise ConfigError(f"{where}: key 'task.real.task': Gymnasium cannot make {env_id!r}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: key 'task.real.env_kwargs': {env_id!r} rejected them: {e}") from None


def _outcome_fn(spec: str, key: str, root: Path) -> Any:
    from cadenza.tasks.real.entry import EntryPointError, resolve

    if not spec:
        return None
    try:
        fn = resolve(spec, root)
    except EntryPointError as e:
        raise ConfigError(f"{root / CONFIG_NAME}: key 'task.real.{key}': {e}") from None
    if not callable(fn):
        raise ConfigError(f"{root / CONFIG_NAME}: key 'task.real.{key}': '{spec}' is not callable")
    return fn


def make_real_task(project: Project, *, num_envs: int, level: float,
                   reward: Literal["sparse", "dense"] = "sparse", seed: int = 0) -> RealTask:
    """Build the batched real task that ``[task.real]`` describes (raises ConfigError, one line)."""
    require_sim()
    from cadenza.tasks.real.batched import RealTask
    from cadenza.tasks.real.builtin import builtin_tasks
    from cadenza.tasks.real.entry import EntryPointError, is_entry_point, resolve
    from cadenza.tasks.real.perturb import PerturbationTargetError

    cfg = project.config.task.real
    root = project.root
    where = root / CONFIG_NAME
    kwargs: dict[str, Any] = dict(cfg.env_kwargs)
    perturbations = list(cfg.perturbations)
    task = cfg.task.strip()
    if not task:
        raise ConfigError(f"{where}: key 'task.real.task': required for --real "
                          "(e.g. 'builtin:reacher', a Gymnasium id or 'my_module:make_env')")
    if task.startswith("builtin:"):
        table = builtin_tasks()
        name = task.removeprefix("builtin:")
        if name not in table:
            raise ConfigError(f"{where}: key 'task.real.task': unknown built-in task {task!r}; "
                              f"available: {', '.join('builtin:' + k for k in table)}")
        bt = table[name]
        make_env = functools.partial(bt.make_env, **kwargs)
        if not cfg.perturbations:
            perturbations = list(bt.perturbations)
    elif is_entry_point(task):
        try:
            factory = resolve(task, root)
        except EntryPointError as e:
            raise ConfigError(f"{where}: key 'task.real.task': env factory {e}") from None
        if not callable(factory):
            raise ConfigError(f"{where}: key 'task.real.task': '{task}' is not callable")
        name = project.name
        make_env = functools.partial(_make_from_factory, factory, kwargs, root, task)
    else:
        name = task
        make_env = functools.partial(_make_from_id, task, kwargs, where)
    success_fn = _outcome_fn(cfg.success, "success", root)
    collision_fn = _outcome_fn(cfg.collision, "collision", root)
    try:
        return RealTask(make_env, name=name, num_envs=num_envs, level=level, reward=reward, seed=seed,
                        perturbations=perturbations, success_fn=success_fn, collision_fn=collision_fn)
    except PerturbationTargetError as e:
        key = f"task.real.perturbations[{e.index}].{e.key}" if cfg.perturbations else "task.real.task"
        raise ConfigError(f"{where}: key '{key}': {e}") from None
    except ValueError as e:
        raise ConfigError(f"{where}: key 'task.real.task': {task!r} {e}") from None
