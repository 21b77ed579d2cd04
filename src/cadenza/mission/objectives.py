"""Goal objectives: what a mission's goal asks for, and when it is met.

Every goal of a project carries one objective (``[mission.objectives]`` in ``cadenza.toml``; a listed
goal without an entry is ``reach_victim``). A mission succeeds when its goal's objective is met
without a collision:

* ``in_debris``: be inside the debris field (crawling, the body overlapping it, when a step ends);
* ``on_ledge``: be on the ledge (a ``climb_step`` finished);
* ``reach_victim``: reach the victim (within ``REACH_M``, or sit within ``SIGNAL_M``): the rule every
  mission had before objectives;
* ``sit_by_victim``: reach the victim and sit beside them (``sit`` within ``SIGNAL_M``).

A planner that will not choose a step raises :class:`PlannerStop` (the LoRA head abstaining on a goal
far from everything it was trained on): the mission ends in a logged safe stop, without success.
"""

from __future__ import annotations

from cadenza.mission.actions import ActionStep
from cadenza.mission.skills import StepOutcome
from cadenza.mission.world import BodyState, Site
from cadenza.project.config import OBJECTIVE_NAMES

OBJECTIVES: dict[str, str] = {
    "in_debris": "be inside the debris field",
    "on_ledge": "be on the ledge",
    "reach_victim": "reach the victim",
    "sit_by_victim": "reach the victim and sit beside them",
}
assert tuple(OBJECTIVES) == OBJECTIVE_NAMES
DEFAULT_OBJECTIVE = "reach_victim"


class PlannerStop(Exception):
    """Raised by a planner that will not choose a step: the mission ends in a logged safe stop."""


def objective_met(objective: str, site: Site, state: BodyState, step: ActionStep, out: StepOutcome) -> bool:
    """Has the step that just ended (``out``) met ``objective``? Never after a collision."""
    if out.collision is not None:
        return False
    if objective == "in_debris":
        return state.posture == "crawling" and site.in_debris(state.x)
    if objective == "on_ledge":
        return state.on_ledge
    if objective == "sit_by_victim":
        return step.name == "sit" and out.reached
    return out.reached
