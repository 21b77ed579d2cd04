"""Goal objectives: what a mission's goal asks for, and when it is met.

Every goal of a project carries one objective; a mission succeeds when its goal's objective is met
without a collision:

* ``in_debris``: be inside the debris field (the body overlaps it, crawling, after a step ends);
* ``on_ledge``: be on the ledge (a ``climb_step`` finished);
* ``reach_victim``: reach the victim (within ``REACH_M``, or sit within ``SIGNAL_M``);
* ``sit_by_victim``: reach the victim and sit beside them (``sit`` within ``SIGNAL_M``).

:class:`ObjectiveExpert` is the scripted planner made to pursue one objective: it runs the scripted
search and stops where the objective is met (crawls only half way into the debris for
``in_debris``, sits once the victim is within reach for ``sit_by_victim``).
"""

from __future__ import annotations

import math
from typing import Any

from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.planners import PlannerInput, ScriptedPlanner
from cadenza.mission.skills import StepOutcome
from cadenza.mission.world import ROBOT_R, SIGNAL_M, BodyState, Site

OBJECTIVES: dict[str, str] = {
    "in_debris": "be inside the debris field",
    "on_ledge": "be on the ledge",
    "reach_victim": "reach the victim",
    "sit_by_victim": "reach the victim and sit beside them",
}
DEFAULT_OBJECTIVE = "reach_victim"
SIT_WITHIN_M = SIGNAL_M - 0.2  # the expert sits once the victim is this close


def objective_met(objective: str, site: Site, state: BodyState, step: ActionStep, out: StepOutcome) -> bool:
    """Has the step that just ended (``out``, no collision) met ``objective``?"""
    if out.collision is not None:
        return False
    if objective == "in_debris":
        return state.posture == "crawling" and site.in_debris(state.x)
    if objective == "on_ledge":
        return state.on_ledge
    if objective == "sit_by_victim":
        return step.name == "sit" and out.reached
    return out.reached


def ends_mission(objective: str, out: StepOutcome) -> bool:
    """Does the step end the mission whatever the objective (a sit away from the goal, a collision)?"""
    return out.collision is not None or out.ends_mission


class ObjectiveExpert:
    """The scripted planner pursuing one objective (the teacher of the LoRA head's closed-loop data)."""

    name = "scripted"

    def __init__(self, vocabulary: Vocabulary, objective: str) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
        self.objective = objective
        self.scripted = ScriptedPlanner(vocabulary)
        self.vocab = vocabulary

    def reset(self, goal: str, seed: int) -> None:
        self.scripted.reset(goal, seed)

    def forget(self) -> None:
        """Drop the scripted planner's memory (a detour in progress): a step it did not choose was taken."""
        self.scripted.reset("", 0)

    def plan(self, inp: PlannerInput) -> ActionStep:
        obs: dict[str, Any] = inp.observation
        if (self.objective == "sit_by_victim" and "sit" in self.vocab
                and obs["victim"]["distance_m"] <= SIT_WITHIN_M and obs["debris"]["state"] != "inside"):
            return ActionStep("sit", {})
        step = self.scripted.plan(inp)
        debris = obs["debris"]
        if self.objective == "in_debris" and step.name == "crawl_forward" and debris["state"] == "ahead":
            cos = max(math.cos(math.radians(debris["normal_deg"])), 0.3)
            lo, hi = self.vocab.actions["crawl_forward"]["distance_m"]
            d = (debris["edge_m"] + ROBOT_R + debris["depth_m"] / 2) / cos
            return ActionStep("crawl_forward", {"distance_m": round(min(max(d, lo), hi), 2)})
        return step


class PlannerStop(Exception):
    """Raised by a planner that will not choose a step (the LoRA head abstaining): the mission ends in a
    logged safe stop, without success."""
