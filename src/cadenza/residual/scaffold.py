"""``cadenza env residual init``: fix the residual architecture and dry-run profile it (no training)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cadenza.errors import ArtefactError, CadenzaError
from cadenza.project.config import Project
from cadenza.residual.network import ResidualArch
from cadenza.tasks.factory import make_task
from cadenza.utils.io import atomic_write_json
from cadenza.utils.versions import library_versions

SPEC_NAME = "residual.json"


def probe_dims(project: Project, real: bool = False) -> tuple[int, int, str]:
    """Observation and action widths and the task label, read off the task itself."""
    task = make_task(project, num_envs=1, real=real)
    try:
        return task.spec.obs_dim, task.spec.act_dim, task.spec.label
    finally:
        task.close()


def init_residual(project: Project, *, hidden_dim: int | None = None, alpha: float | None = None,
                  obs_dim: int | None = None, rate_limit: float | None = None, gate: bool | None = None,
                  device: str = "auto", real: bool = False) -> dict[str, Any]:
    import torch

    from cadenza.accel import Workload, configure
    from cadenza.residual.network import ResidualActor, count_params
    from cadenza.residual.profile import profile_actor

    rc = project.config.residual
    probed_obs, act_dim, label = probe_dims(project, real)
    if obs_dim is not None and obs_dim != probed_obs:
        raise CadenzaError(
            f"--obs-dim {obs_dim} does not match the task: {label} observations are {probed_obs} wide "
            f"(leave --obs-dim out to use the probed width)")
    arch = ResidualArch(
        obs_dim=probed_obs, act_dim=act_dim, hidden_dim=hidden_dim or rc.hidden_dim,
        alpha=rc.alpha if alpha is None else alpha, rate_limit=rc.rate_limit if rate_limit is None else rate_limit,
        gate=rc.gate if gate is None else gate,
    )
    if not 0.0 < arch.alpha <= 1.0:
        raise CadenzaError(f"--alpha must be in (0, 1], got {arch.alpha}")
    if arch.rate_limit <= 0.0:
        raise CadenzaError(f"--rate-limit must be > 0, got {arch.rate_limit}")
    if arch.hidden_dim < 4:
        raise CadenzaError(f"--hidden-dim must be >= 4, got {arch.hidden_dim}")
    torch.manual_seed(rc.seed)
    actor = ResidualActor(arch)
    accel = configure(device, workload=Workload("profile", params=count_params(actor), batch=1024, training=False))
    prof = profile_actor(actor, accel.device)
    spec = {
        "kind": "cadenza.residual.spec",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "project": project.name,
        "task": label,
        "base": project.config.task.real.base if real else project.config.base.source,
        "architecture": arch.as_dict(),
        "control_law": "a = clamp(a_base + alpha * rate_limit(gate * delta), -1, 1)" if arch.gate
        else "a = clamp(a_base + alpha * rate_limit(delta), -1, 1)",
        "profile": prof.as_dict(),
        "device": accel.device,
        "accel": accel.as_dict(),
        "versions": library_versions("torch"),
    }
    atomic_write_json(spec_path(project, real), spec)
    return spec


def spec_path(project: Project, real: bool = False) -> Path:
    return project.residual_dir / ("residual.real.json" if real else SPEC_NAME)


def load_spec(project: Project, real: bool = False) -> dict[str, Any] | None:
    path = spec_path(project, real)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtefactError(f"{path}: not valid JSON (line {e.lineno}); re-run cadenza env residual init") from None


def arch_from_spec(project: Project, real: bool = False) -> ResidualArch:
    """The architecture fixed by ``residual init``, or the config defaults when init was not run."""
    spec = load_spec(project, real)
    if spec is not None:
        a = spec["architecture"]
        return ResidualArch(**{k: a[k] for k in ResidualArch.__dataclass_fields__ if k in a})
    rc = project.config.residual
    obs_dim, act_dim, _ = probe_dims(project, real)
    return ResidualArch(obs_dim=obs_dim, act_dim=act_dim, hidden_dim=rc.hidden_dim, alpha=rc.alpha,
                        rate_limit=rc.rate_limit, gate=rc.gate)
