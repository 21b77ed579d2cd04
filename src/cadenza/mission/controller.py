"""The low-level controller of a mission: the frozen base, corrected by the promoted residual, or
the promoted student.

``--controller residual`` (the default) runs the project's base and, when the registry has a promoted
residual, the residual on top of it through the control law; without one it is the base alone (label
``base``). ``--controller student`` runs the promoted distilled student instead.

Where the residual acts depends on what it was trained on (the task label in its policy file):

* a residual trained on **mission episodes** (``[task] episodes = "mission"``, label
  ``proxy:missions``) has seen every phase of a mission (walking, braking, turning on the spot, crawling,
  climbing, holding a posture) and applies its whole correction every tick;
* a residual trained on the default **dashes** (label ``proxy``) has only ever driven toward a goal
  at least the goal radius (``NOMINAL.goal_radius``, 0.35 m) away and stopped counting there: it
  never had to stop, turn on the spot or hold a posture. The skill running the step therefore says,
  tick by tick, how much of its correction to apply (``act(obs, residual_weight)``, see
  :mod:`cadenza.mission.skills`): all of it while travelling, none while braking, turning or changing
  posture, where the base drives alone, as the safe runtime does with inputs outside what the
  residual was trained on. The residual still runs every tick, so its rate limit sees a continuous
  stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cadenza.base import BasePolicy, load_base
from cadenza.errors import CadenzaError
from cadenza.project.config import Project
from cadenza.residual.combine import BasePlusResidual
from cadenza.tasks.proxy.rescue_dog import ACT_DIM

CONTROLLERS = ("residual", "student")
MISSION_LABEL = "proxy:missions"  # the task label of a residual trained on mission episodes


@dataclass
class LowLevelController:
    """``obs[1, 18] -> action[1, 3]`` for one robot; ``reset()`` at the start of each mission."""

    kind: str  # "base" | "residual" | "student"
    base: BasePolicy | None
    residual: Any = None  # ResidualController: .act(obs, a_base), .reset(mask), .version
    student: Any = None  # promoted student: .act(obs) or callable, .version
    version: str | None = None
    notes: list[str] = field(default_factory=list)
    _combined: Any = field(default=None, init=False, repr=False)  # BasePlusResidual, made on first use

    @property
    def trained_on(self) -> str | None:
        """The task label the residual's policy file records (None without a residual or a label)."""
        return getattr(self.residual, "meta", {}).get("task") if self.residual is not None else None

    @property
    def everywhere(self) -> bool:
        """Apply the residual's whole correction in every phase: it was trained on mission episodes."""
        return self.trained_on == MISSION_LABEL

    def reset(self) -> None:
        for part in (self.residual, self.student):
            if part is not None and hasattr(part, "reset"):
                part.reset(np.ones(1, dtype=bool))

    def act(self, obs: np.ndarray, residual_weight: float = 1.0) -> np.ndarray:
        """The command for ``obs``; ``residual_weight`` in [0, 1] scales the residual's correction
        (the skill sets it from its phase; 0 runs the base alone)."""
        if self.student is not None:
            fn = self.student.act if hasattr(self.student, "act") else self.student
            return np.asarray(fn(obs), dtype=np.float64).reshape(obs.shape[0], -1)
        assert self.base is not None
        if self.residual is None:
            return self.base(obs)
        if self._combined is None:
            self._combined = BasePlusResidual(self.base, self.residual)
        w = 1.0 if self.everywhere else min(max(float(residual_weight), 0.0), 1.0)
        return self._combined.act(obs, w)

    def describe(self) -> dict[str, Any]:
        d = {"kind": self.kind, "version": self.version,
             "base": self.base.source if self.base is not None else None}
        if self.residual is not None:
            d["residual_trained_on"] = self.trained_on
            d["residual_phases"] = "all" if self.everywhere else "travel"
        return d


def _load_student(project: Project) -> Any:
    from cadenza.distill.runtime import load_promoted_student
    student = load_promoted_student(project)
    if student is None:
        raise CadenzaError(f"--controller student: {project.root} has no promoted student; run "
                           f"`cadenza env distill {project.root}` then `cadenza env distill eval {project.root} "
                           "--promote`")
    return student


def _load_residual(project: Project) -> tuple[Any, str | None]:
    """The promoted residual (or None) and a note when it could not even be looked for."""
    try:
        from cadenza.residual.policy import load_promoted_residual  # type: ignore[import-not-found]
    except ModuleNotFoundError as e:
        if e.name in ("cadenza.residual.policy", "cadenza.residual"):
            return None, None  # residual runtime not in this build: the base runs alone
        return None, f"residual runtime unavailable ({e}); running the base alone"
    except ImportError as e:
        return None, f"residual runtime unavailable ({e}); running the base alone"
    return load_promoted_residual(project), None


def load_controller(project: Project, kind: str = "residual") -> LowLevelController:
    if kind not in CONTROLLERS:
        raise CadenzaError(f"--controller: unknown controller {kind!r}; available: {', '.join(CONTROLLERS)}")
    if project.config.task.id != "proxy:rescue-dog":
        raise CadenzaError(f"env run drives the rescue-dog mission world, which needs task.id = 'proxy:rescue-dog' "
                           f"(this project has {project.config.task.id!r})")
    if kind == "student":
        student = _load_student(project)
        return LowLevelController("student", None, student=student, version=getattr(student, "version", None))
    base = load_base(project.config.base.source, project.root, ACT_DIM)
    residual, note = _load_residual(project)
    notes = [note] if note else []
    if residual is None:
        return LowLevelController("base", base, notes=notes)
    ctl = LowLevelController("residual", base, residual=residual, version=str(getattr(residual, "version", None)),
                             notes=notes)
    if not ctl.everywhere:
        ctl.notes.append("the promoted residual was not trained on missions: it acts only while travelling; "
                         "train with [task] episodes = \"mission\" for a residual that acts in every phase")
    return ctl
