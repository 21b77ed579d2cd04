"""Mission planners: one interface, several implementations.

A planner turns a goal into action steps, one decision at a time. At each decision it gets a
:class:`PlannerInput` (the rendered prompt, the observation summary as a dict and as text, the
vocabulary, the steps taken so far) and returns one :class:`~cadenza.mission.actions.ActionStep`.

* ``scripted``: rule based, offline, deterministic; reads the observation summary, and its parameters
  from the rules section of the prompt it is given (:mod:`cadenza.mission.rules`).
* ``lora``: the LoRA action head (:mod:`cadenza.lora.planner`, which registers itself here when
  imported; the CLI imports it for ``--policy lora``).
* ``llm``: an OpenAI-compatible chat model driven by the prompt (:mod:`cadenza.llm.planner`, which
  registers itself here when imported; the CLI imports it for ``--policy llm``).

Later implementations plug in with :func:`register_planner`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from cadenza.errors import CadenzaError
from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.objectives import DEFAULT_OBJECTIVE
from cadenza.mission.rules import read_settings
from cadenza.mission.world import ROBOT_R, SIGNAL_M
from cadenza.project.config import Project, normalise_goal

SIT_WITHIN_M = SIGNAL_M - 0.2  # for sit_by_victim, the scripted planner sits once the victim is this close
DEFAULT_GOAL = "search for the victim"  # = cadenza.mission.episode.DEFAULT_GOAL (a project without goals)


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
    rock_margin_m: float = 0.15  # a straight walk keeps this far from any rock's edge (beyond the body radius)
    detour_margin_m: float = 0.2  # a detour heading keeps this far from every rock's edge
    detour_max_deg: float = 60.0  # largest turn away from the way ahead to get round a rock
    min_walk_m: float = 0.3  # a walk past a rock after a detour turn is skipped when shorter than this
    max_leg_m: float = 3.0  # longest walk in one step (3.0: the vocabulary's own limit)


class ScriptedPlanner:
    """Rule-based planner: square up to each feature, stop short, crawl or climb, then go to the victim.

    It reads the observation summary and pursues the objective of its goal (built by ``--policy scripted``
    it knows only the project's listed goals and refuses any other text), and takes
    its parameters from the rules section of the prompt (``name = value`` settings, see
    :mod:`cadenza.mission.rules`) over the ``rules`` it was built with; no rules section: those alone.
    Rocks: a walk goes straight only if the straight segment keeps clear of every reported rock;
    otherwise the planner turns to the nearest heading (at most ``detour_max_deg`` off the way ahead)
    whose segment is clear, and walks past the rock on the next decision.
    """

    name = "scripted"
    NEEDS = ("walk_forward", "crawl_forward", "turn_left", "turn_right", "climb_step")

    def __init__(self, vocabulary: Vocabulary, rules: ScriptedRules | None = None, objective: str | None = None,
                 goals: dict[str, str] | None = None) -> None:
        missing = [a for a in self.NEEDS if a not in vocabulary]
        if missing:
            raise CadenzaError(f"the scripted planner needs these actions in [mission.actions]: {', '.join(missing)}")
        self.vocab = vocabulary
        self.base_rules = rules or ScriptedRules()
        self.r = self.base_rules
        self._rules_seen: tuple[str, ScriptedRules] = ("", self.base_rules)  # (prompt's rules text, rules)
        # a detour in progress (the planner's only memory): after a detour turn, walk this far to get past the rock
        self.detour: float | None = None
        # the objective pursued; with ``goals`` (normalised goal text -> objective) it is the goal's, and a
        # goal not in ``goals`` is refused
        self.objective = objective or DEFAULT_OBJECTIVE
        self.goals = goals

    def reset(self, goal: str, seed: int) -> None:
        self.detour = None
        if self.goals is not None:
            self.objective = self.check_goal(goal)

    def check_goal(self, goal: str) -> str:
        """The objective of ``goal``; a goal the planner does not know is a one-line error naming the known ones."""
        if self.goals is None:
            return self.objective
        key = normalise_goal(goal)
        if key not in self.goals:
            known = "; ".join(repr(g) for g in self.goals) or "none"
            raise CadenzaError(f"--goal: the scripted planner knows only the project's goals (mission.goals, "
                               f"compared in lower case without punctuation): {known}; got {goal!r}")
        return self.goals[key]

    def forget(self) -> None:
        """Drop the memory of a detour in progress (a step it did not choose was taken instead)."""
        self.detour = None

    # ------------------------------------------------------------------ helpers
    def _range(self, action: str, param: str) -> tuple[float, float]:
        return self.vocab.actions[action][param]

    def _turn(self, deg: float) -> ActionStep:
        name = "turn_left" if deg > 0 else "turn_right"
        lo, hi = self._range(name, "degrees")
        return ActionStep(name, {"degrees": round(min(max(abs(deg), lo), hi), 1)})

    def _move(self, action: str, d: float) -> ActionStep:
        if action == "walk_forward":
            d = min(d, self.r.max_leg_m)
        lo, hi = self._range(action, "distance_m")
        return ActionStep(action, {"distance_m": round(min(max(d, lo), hi), 2)})

    def _clear_length(self, obs: dict[str, Any], heading_deg: float, length: float, margin: float) -> float:
        """How far a straight walk on ``heading_deg`` (relative) can go, up to ``length``, keeping ``margin``
        between the body and every rock it heads toward."""
        for rock in obs["rocks"]:
            b = math.radians(rock["bearing_deg"] - heading_deg)
            along, across = rock["distance_m"] * math.cos(b), rock["distance_m"] * math.sin(b)
            keep = rock["radius_m"] + ROBOT_R + margin
            if abs(across) >= keep or along <= 0.0:  # passes wide of it, or moves away from it
                continue
            length = min(length, along - math.sqrt(keep**2 - across**2))
        return max(length, 0.0)

    def _feature_limit(self, obs: dict[str, Any]) -> float:
        """How far the robot may walk straight on before it comes within the stand-off of a feature."""
        limit = math.inf
        for f in (obs["debris"], obs["step"]):
            if f["state"] == "ahead":
                cos = math.cos(math.radians(f["normal_deg"]))
                if cos > 0.05:
                    limit = min(limit, (f["edge_m"] - self.r.standoff_m) / cos)
        return limit

    def _walk(self, obs: dict[str, Any], d: float, way_deg: float) -> ActionStep:
        """Walk ``d`` metres straight on; if a rock is in the way, detour round it.

        ``way_deg`` is the bearing of the way ahead (the next feature's normal, or the victim).
        """
        clear = self._clear_length(obs, 0.0, d, self.r.rock_margin_m)
        if clear >= d:
            return self._move("walk_forward", d)
        # the rock in the way; headings to try: nearest to the way ahead first
        near = min(obs["rocks"], key=lambda k: self._clear_length({"rocks": [k]}, 0.0, d, self.r.rock_margin_m))
        need = near["distance_m"] + near["radius_m"] + ROBOT_R + 0.1  # far enough to be past it
        options = sorted(range(-90, 91, 5), key=lambda o: (abs(o - way_deg), abs(o)))
        for limit in (self.r.detour_max_deg, 90.0):
            for off in options:
                if off == 0 or abs(off - way_deg) > limit:
                    continue
                if self._clear_length(obs, float(off), need, self.r.detour_margin_m) >= need:
                    self.detour = need
                    return self._turn(float(off))
        if clear >= self._range("walk_forward", "distance_m")[0] + 0.05:
            return self._move("walk_forward", clear)
        return self._turn(-45.0 if near["bearing_deg"] >= 0 else 45.0)  # boxed in: turn away from the nearest rock

    # ------------------------------------------------------------------ the rules
    def rules_for(self, prompt: str) -> ScriptedRules:
        """The rules for a decision: the prompt's rules-section settings over :attr:`base_rules`."""
        settings = read_settings(prompt) if prompt else {}
        key = repr(sorted(settings.items()))
        if key != self._rules_seen[0]:
            self._rules_seen = (key, replace(self.base_rules, **settings))
        return self._rules_seen[1]

    def plan(self, inp: PlannerInput) -> ActionStep:
        """The next step of the full search, stopped where :attr:`objective` is met: it sits once the
        victim is within ``SIT_WITHIN_M`` for ``sit_by_victim``, and crawls only half way into the
        debris field for ``in_debris`` (``reach_victim`` and ``on_ledge`` need no change: the search
        climbs onto the ledge and reaches the victim)."""
        step = self._search(inp)
        obs, objective = inp.observation, self.objective
        if (objective == "sit_by_victim" and "sit" in self.vocab and obs["victim"]["distance_m"] <= SIT_WITHIN_M
                and obs["debris"]["state"] != "inside"):
            return ActionStep("sit", {})
        debris = obs["debris"]
        if objective == "in_debris" and step.name == "crawl_forward" and debris["state"] == "ahead":
            cos = max(math.cos(math.radians(debris["normal_deg"])), 0.3)
            return self._move("crawl_forward", (debris["edge_m"] + ROBOT_R + debris["depth_m"] / 2) / cos)
        return step

    def _search(self, inp: PlannerInput) -> ActionStep:
        self.r = self.rules_for(inp.prompt)
        obs, r = inp.observation, self.r
        debris, step, victim = obs["debris"], obs["step"], obs["victim"]
        if debris["state"] == "inside":
            if abs(debris["normal_deg"]) > r.at_edge_deg:
                return self._turn(debris["normal_deg"])
            cos = math.cos(math.radians(debris["normal_deg"]))
            return self._move("crawl_forward", max(debris["exit_m"] / cos + 0.1, 0.3))
        if self.detour is not None:  # finish a detour: walk past the rock
            d, self.detour = min(self.detour, self._feature_limit(obs)), None
            d = self._clear_length(obs, 0.0, d, 0.05)
            if d >= r.min_walk_m:
                return self._move("walk_forward", d)
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
        return self._walk(obs, victim["distance_m"] - 0.3, victim["bearing_deg"])


def _scripted(project: Project, vocabulary: Vocabulary) -> Planner:
    m = project.config.mission
    goals = {normalise_goal(g): m.objective_of(g) or DEFAULT_OBJECTIVE for g in m.goals or [DEFAULT_GOAL]}
    return ScriptedPlanner(vocabulary, goals=goals)


register_planner("scripted", _scripted)


def _lora_not_loaded(project: Project, vocabulary: Vocabulary) -> Planner:
    raise CadenzaError("--policy lora: import cadenza.lora.planner first (it registers the lora planner; the CLI "
                       "does this), and install the lora extra (pip install 'cadenza[lora]')")


register_planner("lora", _lora_not_loaded)  # replaced when cadenza.lora.planner is imported


def _llm_not_loaded(project: Project, vocabulary: Vocabulary) -> Planner:
    raise CadenzaError("--policy llm: import cadenza.llm.planner first (it registers the llm planner; the CLI "
                       "does this), and install the llm extra (pip install 'cadenza[llm]')")


register_planner("llm", _llm_not_loaded)  # replaced when cadenza.llm.planner is imported
