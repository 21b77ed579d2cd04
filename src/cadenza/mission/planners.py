"""Mission planners: one interface, several implementations.

A planner turns a goal into action steps, one decision at a time. At each decision it gets a
:class:`PlannerInput` (the rendered prompt, the observation summary as a dict and as text, the
vocabulary, the steps taken so far) and returns one :class:`~cadenza.mission.actions.ActionStep`.

* ``scripted``: rule based, offline, deterministic; reads only the observation summary.
* ``lora``: the LoRA action head (``cadenza env lora``), built in issue 9.
* ``llm``: an OpenAI-compatible chat model driven by the prompt, built in issue 10.

Later implementations plug in with :func:`register_planner`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cadenza.errors import CadenzaError, NotBuiltError
from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.world import ROBOT_R
from cadenza.project.config import Project


@dataclass(frozen=True)
class PlannerInput:
    goal: str
    prompt: str  # the rendered prompt (vla_finetune.prompt_template)
    observation: dict[str, Any]  # the summary (see cadenza.mission.world.observe)
    observation_text: str
    vocabulary: Vocabulary
    history: tuple[ActionStep, ...]  # steps already taken in this mission
    step: int  # 1-based index of the decision being asked for


@runtime_checkable
class Planner(Protocol):
    name: str

    def reset(self, goal: str, seed: int) -> None:
        """A new mission starts."""
        ...

    def _feature_limit(self, obs: dict[str, Any]) -> float:
        """How far the robot may walk straight on before it comes within the stand-off of a feature."""
        limit = math.inf
        for f in (obs["debris"], obs["step"]):
            if f["state"] == "ahead":
                cos = math.cos(math.radians(f["normal_deg"]))
                if cos > 0.05:
                    limit = min(limit, (f["edge_m"] - self.r.standoff_m) / cos)
        return limit

    def plan(self, inp: PlannerInput) -> ActionStep:
        """Return the next action step."""
        ...


PlannerFactory = Callable[[Project, Vocabulary], Planner]
_REGISTRY: dict[str, PlannerFactory] = {}


def register_planner(name: str, factory: PlannerFactory) -> None:
    _REGISTRY[name] = factory


def planner_names() -> list[str]:
    return list(_REGISTRY)


def make_planner(name: str, project: Project, vocabulary: Vocabulary) -> Planner:
    if name not in _REGISTRY:
        raise CadenzaError(f"--policy: unknown planner {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](project, vocabulary)


# ---------------------------------------------------------------------------------------------- scripted
@dataclass(frozen=True)
class ScriptedRules:
    standoff_m: float = 0.3  # stop this far before a feature's edge
    crawl_from_m: float = 0.5  # start crawling when the debris edge is this close
    climb_from_m: float = 0.5  # climb when the step face is this close (the skill reaches 0.6 m)
    square_deg: float = 12.0  # turn to face a feature square on when further off than this
    crawl_square_deg: float = 25.0  # crawling through at up to this angle is fine
    aim_deg: float = 8.0  # turn toward the victim when further off than this
    rock_margin_m: float = 0.2  # keep a waypoint this far from any rock's edge (beyond the body radius)


class ScriptedPlanner:
    """Rule-based planner: square up to each feature, stop short, crawl or climb, then go to the victim."""

    name = "scripted"
    NEEDS = ("walk_forward", "crawl_forward", "turn_left", "turn_right", "climb_step")

    def __init__(self, vocabulary: Vocabulary, rules: ScriptedRules | None = None) -> None:
        missing = [a for a in self.NEEDS if a not in vocabulary]
        if missing:
            raise CadenzaError(f"the scripted planner needs these actions in [mission.actions]: {', '.join(missing)}")
        self.vocab = vocabulary
        self.r = rules or ScriptedRules()
        self._after_sidestep = False

    def reset(self, goal: str, seed: int) -> None:
        self._after_sidestep = False

    # helpers
    def _range(self, action: str, param: str) -> tuple[float, float]:
        return self.vocab.actions[action][param]

    def _turn(self, deg: float) -> ActionStep:
        lo, hi = self._range("turn_left", "degrees")
        mag = min(max(abs(deg), lo), hi)
        return ActionStep("turn_left" if deg > 0 else "turn_right", {"degrees": round(mag, 1)})

    def _move(self, action: str, d: float) -> ActionStep:
        lo, hi = self._range(action, "distance_m")
        return ActionStep(action, {"distance_m": round(min(max(d, lo), hi), 2)})

    def _clear_of_rocks(self, obs: dict[str, Any], d: float) -> float:
        """Shorten a straight move of ``d`` metres so its end point keeps clear of every reported rock."""
        for rock in obs["rocks"]:
            b = math.radians(rock["bearing_deg"])
            rx, ry = rock["distance_m"] * math.cos(b), rock["distance_m"] * math.sin(b)
            keep = rock["radius_m"] + ROBOT_R + self.r.rock_margin_m
            if rx <= 0.0 or abs(ry) >= keep:
                continue
            # the end point (d, 0) must stay outside the circle of radius `keep` around the rock
            half = math.sqrt(keep**2 - ry**2)
            if rx - half < d < rx + half:
                d = rx - half
        return d

    def _feature_limit(self, obs: dict[str, Any]) -> float:
        """How far the robot may walk straight on before it comes within the stand-off of a feature."""
        limit = math.inf
        for f in (obs["debris"], obs["step"]):
            if f["state"] == "ahead":
                cos = math.cos(math.radians(f["normal_deg"]))
                if cos > 0.05:
                    limit = min(limit, (f["edge_m"] - self.r.standoff_m) / cos)
        return limit

    def plan(self, inp: PlannerInput) -> ActionStep:
        obs, r = inp.observation, self.r
        if self._after_sidestep:  # walk on a little in the new direction before lining up again
            self._after_sidestep = False
            d = min(self._clear_of_rocks(obs, 0.7), self._feature_limit(obs))
            if d >= self._range("walk_forward", "distance_m")[0] and obs["debris"]["state"] != "inside":
                return self._move("walk_forward", d)
        debris, step = obs["debris"], obs["step"]
        if debris["state"] == "inside":
            if abs(debris["normal_deg"]) > r.crawl_square_deg:
                return self._turn(debris["normal_deg"])
            cos = math.cos(math.radians(debris["normal_deg"]))
            return self._move("crawl_forward", debris["exit_m"] / cos + 0.1)
        # the nearest feature still ahead
        ahead = [(f["edge_m"], kind, f) for kind, f in (("debris", debris), ("step", step)) if f["state"] == "ahead"]
        if ahead:
            edge, kind, f = min(ahead, key=lambda t: t[0])
            normal = f["normal_deg"]
            cos = math.cos(math.radians(normal))
            if kind == "debris" and edge <= r.crawl_from_m:
                if abs(normal) > r.crawl_square_deg:
                    return self._turn(normal)
                return self._move("crawl_forward", (edge + f["depth_m"] + 2 * ROBOT_R) / cos + 0.1)
            if kind == "step" and edge <= r.climb_from_m:
                if abs(normal) > r.square_deg:
                    return self._turn(normal)
                return ActionStep("climb_step", {})
            if abs(normal) > r.square_deg:
                return self._turn(normal)
            d = self._clear_of_rocks(obs, (edge - r.standoff_m) / cos)
            if d < self._range("walk_forward", "distance_m")[0]:
                return self._sidestep(obs)
            return self._move("walk_forward", d)
        victim = obs["victim"]
        if abs(victim["bearing_deg"]) > r.aim_deg:
            return self._turn(victim["bearing_deg"])
        d = self._clear_of_rocks(obs, victim["distance_m"] - 0.3)
        if d < self._range("walk_forward", "distance_m")[0]:
            return self._sidestep(obs)
        return self._move("walk_forward", d)

    def _sidestep(self, obs: dict[str, Any]) -> ActionStep:
        """A rock sits where we want to stop: turn away from it (the next decision walks on)."""
        rock = min(obs["rocks"], key=lambda k: k["distance_m"])
        self._after_sidestep = True
        return self._turn(-40.0 if rock["bearing_deg"] >= 0 else 40.0)


def _scripted(project: Project, vocabulary: Vocabulary) -> Planner:
    return ScriptedPlanner(vocabulary)


def _not_built(name: str, issue: int) -> PlannerFactory:
    def factory(project: Project, vocabulary: Vocabulary) -> Planner:
        raise NotBuiltError(f"--policy {name}: the {name} planner is not built yet (tracked in issue {issue}); "
                            f"use --policy scripted")

    return factory


register_planner("scripted", _scripted)
register_planner("lora", _not_built("lora", 9))
register_planner("llm", _not_built("llm", 10))
