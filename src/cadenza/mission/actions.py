"""Action steps and the action vocabulary a mission planner chooses from.

The vocabulary comes from ``[mission.actions]`` in ``cadenza.toml``: each action has named numeric
parameters with a ``[min, max]`` range. A planner returns one :class:`ActionStep` per decision;
:meth:`Vocabulary.check` validates it (unknown action or parameter, non-numeric value) and clamps
every parameter into its range, saying what it changed. Text forms such as ``walk_forward 1.0`` or
``turn_left degrees=30`` are parsed by :meth:`Vocabulary.parse` (what an LLM or a LoRA head emits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from cadenza.project.config import ActionSpec


class ActionError(ValueError):
    """An action step that cannot be executed (unknown name, bad or missing parameter)."""


@dataclass(frozen=True)
class ActionStep:
    """One decision of a planner: an action name and its numeric parameters."""

    name: str
    params: dict[str, float] = field(default_factory=dict)
    raw: str | None = None  # the planner's raw text, when it produced text

    def text(self) -> str:
        """Compact text form, e.g. ``walk_forward 1.2`` (parameters in the order given)."""
        vals = " ".join(_fmt(v) for v in self.params.values())
        return f"{self.name} {vals}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class CheckedAction:
    """An action step after validation: parameters clamped into range, and what was changed."""

    step: ActionStep
    clamped: dict[str, float]  # parameter -> the value the planner asked for, when it was out of range


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


class Vocabulary:
    """The actions of a project: ``name -> {param: (lo, hi)}`` plus a one-line description each."""

    def __init__(self, actions: dict[str, dict[str, tuple[float, float]]],
                 descriptions: dict[str, str] | None = None) -> None:
        if not actions:
            raise ActionError("the action vocabulary is empty")
        self.actions = {k: {p: (float(lo), float(hi)) for p, (lo, hi) in v.items()} for k, v in actions.items()}
        self.descriptions = dict(descriptions or {})

    @classmethod
    def from_config(cls, specs: dict[str, ActionSpec]) -> Vocabulary:
        return cls({k: dict(v.params) for k, v in specs.items()}, {k: v.description for k, v in specs.items()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`as_dict` (the form stored in run-log headers)."""
        acts = {k: {p: (r[0], r[1]) for p, r in v.get("params", {}).items()} for k, v in data.items()}
        return cls(acts, {k: v.get("description", "") for k, v in data.items()})

    def as_dict(self) -> dict[str, Any]:
        return {k: {"description": self.descriptions.get(k, ""), "params": {p: list(r) for p, r in v.items()}}
                for k, v in self.actions.items()}

    @property
    def names(self) -> list[str]:
        return list(self.actions)

    def __contains__(self, name: object) -> bool:
        return name in self.actions

    def text(self) -> str:
        """The vocabulary as prompt text: ``walk_forward distance_m=[0.1, 3]; climb_step; ...``."""
        parts = []
        for name, params in self.actions.items():
            ps = " ".join(f"{p}=[{_fmt(lo)}, {_fmt(hi)}]" for p, (lo, hi) in params.items())
            parts.append(f"{name} {ps}".strip())
        return "; ".join(parts)

    def check(self, step: ActionStep) -> CheckedAction:
        """Validate ``step`` against the vocabulary; clamp each parameter into its range."""
        if step.name not in self.actions:
            raise ActionError(f"unknown action {step.name!r}; available: {', '.join(self.actions)}")
        spec = self.actions[step.name]
        extra = sorted(set(step.params) - set(spec))
        if extra:
            want = ", ".join(spec) or "none"
            raise ActionError(f"{step.name}: unknown parameter(s) {', '.join(extra)}; expected: {want}")
        out: dict[str, float] = {}
        clamped: dict[str, float] = {}
        for p, (lo, hi) in spec.items():
            if p not in step.params:
                raise ActionError(f"{step.name}: missing parameter {p} (range [{_fmt(lo)}, {_fmt(hi)}])")
            try:
                v = float(step.params[p])
            except (TypeError, ValueError):
                raise ActionError(f"{step.name}: parameter {p} must be a number, got {step.params[p]!r}") from None
            if not math.isfinite(v):
                raise ActionError(f"{step.name}: parameter {p} must be finite, got {v}")
            c = min(max(v, lo), hi)
            if c != v:
                clamped[p] = v
            out[p] = c
        return CheckedAction(ActionStep(step.name, out, step.raw), clamped)

    def parse(self, text: str) -> ActionStep:
        """Parse ``name v1 v2`` or ``name p1=v1 p2=v2`` (positional values follow the vocabulary order)."""
        raw = text
        text = text.strip().strip("`").strip()
        tokens = [t for t in re.split(r"[\s,]+", text) if t]
        if not tokens:
            raise ActionError("empty action text")
        name, args = tokens[0], tokens[1:]
        if name not in self.actions:
            raise ActionError(f"unknown action {name!r}; available: {', '.join(self.actions)}")
        order = list(self.actions[name])
        params: dict[str, Any] = {}
        for i, tok in enumerate(args):
            key, sep, val = tok.partition("=")
            if sep:
                params[key] = val
            elif i < len(order):
                params[order[i]] = tok
            else:
                raise ActionError(f"{name}: too many values in {raw!r}; expected: {', '.join(order) or 'none'}")
        return ActionStep(name, params, raw)

    def parse_sequence(self, text: str) -> list[ActionStep]:
        """Parse ``'walk_forward 1.0, crawl_forward 0.5'`` (steps separated by commas or semicolons)."""
        steps, current = [], []
        for tok in re.split(r"([,;])|\s+", text):
            if not tok:
                continue
            if tok in ",;" or (tok in self.actions and current):
                if current:
                    steps.append(self.parse(" ".join(current)))
                current = [] if tok in ",;" else [tok]
            else:
                current.append(tok)
        if current:
            steps.append(self.parse(" ".join(current)))
        return steps
