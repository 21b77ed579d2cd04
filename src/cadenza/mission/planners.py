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
    approach_m: float = 1.0  # on a long approach, stop this far first and square up again
    crawl_from_m: float = 0.5  # start crawling when the debris edge is this close
    climb_from_m: float = 0.5  # climb when the step face is this close (the skill reaches 0.6 m)
    square_deg: float = 10.0  # away from features, turn square to the next one when further off than this
    at_edge_deg: float = 25.0  # at a feature's edge, crawl or climb at up to this angle rather than turn there
    aim_deg: float = 8.0  # turn toward the victim when further off than this
    rock_margin_m: float = 0.2  # keep a waypoint this far from any rock's edge (beyond the body radius)
    rock_close_m: float = 0.45  # a rock ahead with less clearance than this: turn away first
    min_walk_m: float = 0.3  # shorter walks (forced by a rock) become a side-step


class ScriptedPlanner:
    """Rule-based planner: square up to each feature, stop short, crawl or climb, then go to the victim.

    It reads only the observation summary (never the goal text): every goal runs the full search.
    """

    name = "scripted"
    NEEDS = ("walk_forward", "crawl_forward", "turn_left", "turn_right", "climb_step")

    def __init__(self, vocabulary: Vocabulary, rules: ScriptedRules | None = None) -> None:
        missing = [a for a in self.NEEDS if a not in vocabulary]
        if missing:
            raise CadenzaError(f"the scripted planner needs these actions in [mission.actions]: {', '.join(missing)}")
        self.vocab = vocabulary
        self.r = rules or ScriptedRules()
        self._pass_rock: float | None = None  # after a side-step turn: walk this far to get past the rock

    def reset(self, goal: str, seed: int) -> None:
        self._pass_rock = None

    # ------------------------------------------------------------------ helpers
    def _range(self, action: str, param: str) -> tuple[float, float]:
        return self.vocab.actions[action][param]

    def _turn(self, deg: float) -> ActionStep:
        lo, hi = self._range("turn_left", "degrees")
        mag = min(max(abs(deg), lo), hi)
        return ActionStep("turn_left" if deg > 0 else "turn_right", {"degrees": round(mag, 1)})

    def _move(self, action: str, d: float) -> ActionStep:
        lo, hi = self._range(action, "distance_m")
        return ActionStep(action, {"distance_m": round(min(max(d, lo), hi), 2)})

    @staticmethod
    def _rock_xy(rock: dict[str, Any]) -> tuple[float, float]:
        b = math.radians(rock["bearing_deg"])
        return rock["distance_m"] * math.cos(b), rock["distance_m"] * math.sin(b)

    def _clear_of_rocks(self, obs: dict[str, Any], d: float) -> float:
        """Shorten a straight move of ``d`` metres so its end point keeps clear of every reported rock."""
        for rock in obs["rocks"]:
            rx, ry = self._rock_xy(rock)
            keep = rock["radius_m"] + ROBOT_R + self.r.rock_margin_m
            if rx <= 0.0 or abs(ry) >= keep:
                continue
            half = math.sqrt(keep**2 - ry**2)  # the end point (d, 0) must stay outside this circle
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

    def _close_rock(self, obs: dict[str, Any]) -> dict[str, Any] | None:
        for rock in obs["rocks"]:
            clear = rock["distance_m"] - rock["radius_m"] - ROBOT_R
            if clear < self.r.rock_close_m and abs(rock["bearing_deg"]) < 70:
                return rock
        return None

    def _sidestep(self, obs: dict[str, Any], rock: dict[str, Any], prefer_deg: float = 0.0) -> ActionStep:
        """Turn so that a straight walk passes ``rock`` with room to spare; the next decision walks past it."""
        dist, b = rock["distance_m"], rock["bearing_deg"]
        need = math.degrees(math.asin(min(1.0, (rock["radius_m"] + ROBOT_R + 0.25) / max(dist, 1e-3))))
        side = -1.0 if b > 0 or (b == 0 and prefer_deg < 0) else 1.0  # turn away from the rock
        turn = side * min(max(need - abs(b) + 5.0, 15.0), 90.0)
        self._pass_rock = dist + 0.3
        return self._turn(turn)

    def _walk(self, obs: dict[str, Any], d: float, prefer_deg: float) -> ActionStep:
        """Walk ``d`` metres, stopping short of a rock; a rock in the way makes a side-step instead."""
        clear = self._clear_of_rocks(obs, d)
        if clear < d and clear < self.r.min_walk_m:
            blocking = [k for k in obs["rocks"] if self._rock_xy(k)[0] > 0] or obs["rocks"]
            return self._sidestep(obs, min(blocking, key=lambda k: k["distance_m"]), prefer_deg)
        return self._move("walk_forward", clear)

    # ------------------------------------------------------------------ the rules
    def plan(self, inp: PlannerInput) -> ActionStep:
        obs, r = inp.observation, self.r
        debris, step, victim = obs["debris"], obs["step"], obs["victim"]
        if debris["state"] == "inside":
            if abs(debris["normal_deg"]) > r.at_edge_deg:
                return self._turn(debris["normal_deg"])
            cos = math.cos(math.radians(debris["normal_deg"]))
            return self._move("crawl_forward", max(debris["exit_m"] / cos + 0.1, 0.3))
        if self._pass_rock is not None:  # finish a side-step: walk past the rock
            d, self._pass_rock = min(self._pass_rock, self._feature_limit(obs)), None
            if d >= r.min_walk_m:
                return self._walk(obs, d, victim["bearing_deg"])
        rock = self._close_rock(obs)
        if rock is not None:
            return self._sidestep(obs, rock, victim["bearing_deg"])
        ahead = [(f["edge_m"], kind, f) for kind, f in (("debris", debris), ("step", step)) if f["state"] == "ahead"]
        if ahead:
            edge, kind, f = min(ahead, key=lambda t: t[0])
            normal = f["normal_deg"]
            at_edge = edge <= (r.crawl_from_m if kind == "debris" else r.climb_from_m)
            if abs(normal) > (r.at_edge_deg if at_edge else r.square_deg):
                return self._turn(normal)
            cos = math.cos(math.radians(normal))
            if at_edge and kind == "debris":
                return self._move("crawl_forward", (edge + f["depth_m"] + 2 * ROBOT_R) / cos + 0.1)
            if at_edge:
                return ActionStep("climb_step", {})
            d = (edge - r.standoff_m) / cos
            if edge - r.standoff_m > r.approach_m + 0.5:  # long approach: two legs, squaring up in between
                d = (edge - r.approach_m) / cos
            return self._walk(obs, d, normal)
        if abs(victim["bearing_deg"]) > r.aim_deg:
            return self._turn(victim["bearing_deg"])
        return self._walk(obs, victim["distance_m"] - 0.3, 0.0)


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
