"""Per-command checks that need the project: run by ``@locked`` / ``@checked`` before any work.

Each ``check(project, params)`` reads ``cadenza.toml`` and what it points at (never torch, never the
project's own code) and raises a one-line error: ConfigError (exit 2) for the file, UsageError
(exit 2) for a flag that cannot work with this project, ArtefactError (exit 2) for a missing version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadenza.errors import ArtefactError, UsageError
from cadenza.project.config import CONFIG_NAME, ConfigError, Project
from cadenza.project.references import check_base, check_project, check_task


def round_steps(project: Project, real: bool = False) -> int:
    """Env steps of one training round (the governor's batch) for the project's ``task.num_envs`` and
    ``[residual] algorithm`` (SAC's rounds are shorter than PPO's)."""
    from cadenza.governance.governor import LocalGovernor, TaskProfile

    n = project.config.task.num_envs
    algorithm = project.config.residual.algorithm
    sizes = []
    for alg in ("ppo", "sac") if algorithm == "auto" else (algorithm,):  # auto: the larger round, either may run
        plan = LocalGovernor().plan(TaskProfile(obs_dim=1, act_dim=1, horizon=1, num_envs=n, device="cpu",
                                                budget_steps=10**9, target_level=project.config.task.level,
                                                label="mujoco:probe" if real else "proxy", algorithm=alg))
        sizes.append(int(plan.hyperparameters["n_steps"]) * int(plan.hyperparameters["num_envs"]))
    return max(sizes)


def _registry(project: Project) -> None:
    """With ``[registry] backend = "mlflow"``: mlflow installed, a server named, and the server answers."""
    if project.config.registry.backend != "local":
        from cadenza.governance.registry import open_registry

        open_registry(project)


def _version_exists(project: Project, kind: str, version: str | None) -> None:
    if project.config.registry.backend != "local":
        from cadenza.governance.registry import open_registry

        reg = open_registry(project)
        if version is not None and version not in reg.versions(kind):
            raise ArtefactError(f"--version: {kind} version {version!r} not found in {reg.location(kind)}")
    elif version is not None and not (project.registry_dir / kind / version / "manifest.json").is_file():
        raise ArtefactError(f"--version: {kind} version {version!r} not found in {project.registry_dir / kind}")


def residual_init(project: Project, p: dict[str, Any]) -> None:
    check_project(project, p.get("real", False))


def _scale(project: Project, p: dict[str, Any]) -> Any:
    """--backend / --ray-address / --rollout-workers over [scale] (Ray installed when asked for)."""
    from cadenza.scale.backend import resolve_scale

    return resolve_scale(project.config.scale, p.get("backend"), p.get("ray_address"), p.get("rollout_workers"))


def _track(project: Project, p: dict[str, Any]) -> None:
    """--track over [tracking] (a server named for mlflow)."""
    from cadenza.tracking import resolve_track

    resolve_track(project.config.tracking, p.get("track"))


def residual_train(project: Project, p: dict[str, Any]) -> None:
    real = p.get("real", False)
    check_project(project, real)
    _track(project, p)
    _registry(project)
    _scale(project, p).check_shards(project.config.task.num_envs, "parallel envs (task.num_envs)",
                                    project.config.residual.algorithm)
    steps = p.get("steps")
    budget = project.config.residual.steps if steps is None else steps
    one = round_steps(project, real)
    if budget < one:
        n = project.config.task.num_envs
        what = (f"--steps: {steps:,}" if steps is not None
                else f"{project.root / CONFIG_NAME}: key 'residual.steps': {budget:,}")
        msg = (f"{what} is less than one training round ({one:,} env steps for task.num_envs = {n}), so nothing "
               f"would be trained; ask for at least {one:,}")
        raise UsageError(msg) if steps is not None else ConfigError(msg)


def residual_eval(project: Project, p: dict[str, Any]) -> None:
    check_project(project, p.get("real", False))
    if p.get("ab") and p.get("promote"):
        raise UsageError("--ab: compares residual on/off and gives no verdict; drop --promote (or --ab)")
    _version_exists(project, "residual", p.get("version"))


def residual_bench(project: Project, p: dict[str, Any]) -> None:
    real = p.get("real", False)
    check_project(project, real)
    if not real and project.config.task.episodes == "mission":
        raise ConfigError(f"{project.root / CONFIG_NAME}: key 'task.episodes': bench compares the arms on dash "
                          "episodes ('dash'); the mission reward tracks the base, which a full-RL arm does not have")
    from cadenza.bench.arms import arm_specs

    try:
        arm_specs(p.get("arms", "residual").split(","), p.get("full_reward") or "same", project.config.residual.reward)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _scale(project, p)
    _track(project, p)


def distill_build(project: Project, p: dict[str, Any]) -> None:
    check_project(project, p.get("real", False))
    _track(project, p)
    _registry(project)
    _scale(project, p).check_shards(project.config.distill.rollout_envs, "collection envs (distill.rollout_envs)")


def distill_eval(project: Project, p: dict[str, Any]) -> None:
    check_project(project, p.get("real", False))
    _version_exists(project, "student", p.get("version"))


def run(project: Project, p: dict[str, Any]) -> None:
    check_task(project, real=False)
    if project.config.task.id != "proxy:rescue-dog":
        raise ConfigError(f"{project.root / CONFIG_NAME}: key 'task.id': env run drives the rescue-dog mission "
                          f"world, which needs 'proxy:rescue-dog' (got {project.config.task.id!r})")
    if p.get("controller", "residual") != "student":
        check_base(project, real=False)
    _registry(project)


def finetune(project: Project, p: dict[str, Any]) -> None:
    out = Path(p["output"])
    try:
        is_dir, exists = out.is_dir(), out.exists()
    except (OSError, ValueError) as e:
        raise UsageError(f"--output: cannot use {str(out)[:80]!r} ({getattr(e, 'strerror', None) or e})") from None
    if p.get("fmt", "jsonl") == "jsonl" and is_dir:
        raise UsageError(f"--output: {out} is a directory; --format jsonl writes one file")
    if p.get("fmt") == "lerobot" and exists and not is_dir:
        raise UsageError(f"--output: {out} is a file; --format lerobot writes a dataset directory")


def writes_inside(project_param: str, output_param: str) -> Any:
    """``when`` for ``@locked``: lock only when the output lies inside the project directory."""

    def when(params: dict[str, Any]) -> bool:
        try:
            Path(params[output_param]).resolve().relative_to(Path(params[project_param]).resolve())
        except (ValueError, OSError):
            return False
        return True

    return when


def tracked(project: Project, p: dict[str, Any]) -> None:
    """The config, and --track over [tracking]."""
    _track(project, p)


def registry(project: Project, p: dict[str, Any]) -> None:
    """The config, and a registry that can be opened (an MLflow one's server answers)."""
    _registry(project)


def nothing(project: Project, p: dict[str, Any]) -> None:
    """Only the config itself (load_project already checked it)."""
