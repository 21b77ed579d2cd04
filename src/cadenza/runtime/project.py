"""The runtime for a cadenza project: its base and its promoted residual, and the A/B report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.project.config import Project, load_project
from cadenza.runtime.ab import ABResult, run_ab
from cadenza.runtime.safe import DEFAULT_BUDGET_US, SafeRuntime

AB_SEED = 2_000_003  # held out: neither training nor the scorecard resets with this seed
AB_ROBOTS = 100  # proxy robots stepped together (the real simulator uses task.num_envs)
BUDGET_SHARE = 0.1  # default deadline: this share of the control period


def budget_us_for(control_hz: float | None) -> float:
    """Default per-step deadline for the correction: 10% of the control period (2 ms at 50 Hz)."""
    return BUDGET_SHARE * 1e6 / control_hz if control_hz else DEFAULT_BUDGET_US


def _project(project: Project | str | Path) -> Project:
    return project if isinstance(project, Project) else load_project(project)


def from_project(project: Project | str | Path, *, real: bool = False, version: str | None = None,
                 budget_us: float | None = None, **kw: Any) -> SafeRuntime:
    """A :class:`SafeRuntime` with the project's base and its promoted residual (or ``version``).

    Extra keywords go to :class:`SafeRuntime` (``mode``, ``on_base_fault``, ``backend``, ...).
    """
    from cadenza.base.loader import load_base
    from cadenza.governance.registry import open_registry
    from cadenza.residual.policy import load_policy
    from cadenza.tasks.factory import base_source, make_task

    proj = _project(project)
    reg = open_registry(proj)
    version = version or reg.baseline("residual")
    if version is None:
        raise CadenzaError(f"{proj.root}: no promoted residual; train one (cadenza env residual train) or name "
                           "a version")
    actor, _ = load_policy(reg.path("residual", version, "policy.pt"))
    base = load_base(base_source(proj, real), proj.root, actor.arch.act_dim)
    if budget_us is None:
        task = make_task(proj, num_envs=1, real=real)
        budget_us = budget_us_for(task.spec.control_hz)
        task.close()
    return SafeRuntime.for_residual(base, actor, budget_us=budget_us, **kw)


def ab_report_path(project: Project, real: bool = False) -> Path:
    return project.residual_dir / ("ab_report_real.json" if real else "ab_report.json")


def ab_for_project(project: Project, actor: Any, base: Any, *, episodes_per_arm: int, real: bool = False,
                   seed: int = AB_SEED, version: str | None = None) -> tuple[ABResult, dict[str, Any], Path]:
    """Run the A/B on the project's task at its target level and write the report; returns (result, report, path)."""
    from cadenza.tasks.factory import make_task
    from cadenza.utils.io import atomic_write_json
    from cadenza.utils.versions import library_versions

    level = project.config.task.level

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real)

    probe = mk(1)
    budget = budget_us_for(probe.spec.control_hz)
    probe.close()
    robots = project.config.task.num_envs if real else AB_ROBOTS
    result = run_ab(mk, base, lambda: SafeRuntime.for_residual(base, actor, budget_us=budget),
                    episodes_per_arm=episodes_per_arm, seed=seed, robots=robots,
                    confidence=project.config.governance.confidence)
    report = {**result.as_dict(), "project": project.name, "version": version,
              "base": getattr(base, "source", None), "versions": library_versions("torch")}
    path = ab_report_path(project, real)
    atomic_write_json(path, report)
    return result, report, path
