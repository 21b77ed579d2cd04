"""One mission as a state machine: the single owner of how a mission goes, decision by decision.

``cadenza env run`` (:mod:`cadenza.mission.runner`, one mission at a time, logged) and mission-episode
training (:mod:`cadenza.mission.task`, a batch of missions sharing a physics tick) both drive a
:class:`Mission`; neither restates its rules:

1. :meth:`Mission.decide` asks the planner for the next action step (it gets the observation summary,
   and from ``env run`` the rendered prompt and the summary as text), checks it against the vocabulary
   and starts it (:class:`~cadenza.mission.skills.StepRun`). An invalid step, or one the world refuses
   (``climb_step`` out of reach), uses up a step and takes no time.
2. The caller ticks the physics while the step runs: :meth:`Mission.run_step` drives one mission's
   step with a controller; the batched task ticks every mission's body at once and calls
   ``step_run.prepare()`` / ``step_run.after_tick()`` itself.
3. :meth:`Mission.finish_step` closes the step and returns its :class:`Decision`, outcome included.
   The mission is :attr:`Mission.over` once a step reached the victim, collided or ended the mission
   (``sit``), or when the step limit is used up.

Success = the goal's objective met without a collision (:mod:`cadenza.mission.objectives`; the default
``reach_victim``: the victim reached). A planner raising :class:`~cadenza.mission.objectives.PlannerStop`
ends the mission in a safe stop: the decision is recorded as the pseudo-step ``safe_stop`` (never
executed) whose outcome note says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController
from cadenza.mission.objectives import DEFAULT_OBJECTIVE, PlannerStop, objective_met
from cadenza.mission.planners import DEFAULT_GOAL, Planner, PlannerInput
from cadenza.mission.skills import StepOutcome, StepRun
from cadenza.mission.world import BodyState, Site, observe

__all__ = ["DEFAULT_GOAL", "Decision", "Mission"]  # DEFAULT_GOAL: a project without [mission] goals, and training


@dataclass
class Decision:
    """One action step of a mission: what the planner proposed, what ran, and (once finished) its outcome."""

    index: int  # 1-based
    proposed: ActionStep
    action: ActionStep  # the checked step (clamped into range), or the proposal when it was invalid
    error: str | None = None  # why the proposal was invalid
    clamped: dict[str, Any] = field(default_factory=dict)
    run: StepRun | None = None  # the step in progress (None when invalid or stopped)
    stopped: str | None = None  # the planner stopped the mission safely (PlannerStop), and why
    outcome: StepOutcome | None = None


class Mission:
    """One mission on one site with one body; see the module docstring for the protocol."""

    def __init__(self, site: Site, body: ProxyBody, planner: Planner, vocabulary: Vocabulary, goal: str,
                 *, max_steps: int, seed: int, objective: str = DEFAULT_OBJECTIVE) -> None:
        self.site, self.body, self.planner, self.vocab, self.goal = site, body, planner, vocabulary, goal
        self.max_steps = int(max_steps)
        self.objective = objective
        self.state = BodyState(body.x, body.y, body.yaw)
        self.taken: list[ActionStep] = []
        self.steps = 0  # action steps started, invalid and refused ones included
        self.current: Decision | None = None
        self.success = False
        self.collision: str | None = None  # the kind of the collision that ended the mission
        self.ended = False  # a step ended the mission (``sit``)
        planner.reset(goal, seed)

    @property
    def over(self) -> bool:
        return self.success or self.collision is not None or self.ended or self.steps >= self.max_steps

    def observation(self) -> dict[str, Any]:
        """The observation summary the planner decides on (:func:`cadenza.mission.world.observe`)."""
        return observe(self.site, self.state)

    def decide(self, observation: dict[str, Any], *, prompt: str = "", observation_text: str = "") -> Decision:
        """Ask the planner for step ``steps + 1`` and start it (call only while not :attr:`over`)."""
        if self.over:
            raise RuntimeError("the mission is over")
        self.steps += 1
        try:
            proposed = self.planner.plan(PlannerInput(self.goal, prompt, observation, observation_text, self.vocab,
                                                      tuple(self.taken), self.steps))
        except PlannerStop as e:
            stop = ActionStep("safe_stop", {}, raw=str(e))
            self.current = Decision(self.steps, stop, stop, stopped=str(e))
            return self.current
        try:
            checked = self.vocab.check(proposed)
        except ActionError as e:
            d = Decision(self.steps, proposed, proposed, error=str(e))
        else:
            d = Decision(self.steps, proposed, checked.step, clamped=checked.clamped,
                         run=StepRun(checked.step, self.site, self.state, self.body))
        self.taken.append(d.action)
        self.current = d
        return d

    @property
    def running(self) -> bool:
        """Whether the current step still needs physics ticks."""
        return self.current is not None and self.current.run is not None and not self.current.run.done

    def run_step(self, controller: LowLevelController) -> None:
        """Tick this mission's own body with ``controller`` until the current step is done."""
        assert self.current is not None
        if self.current.run is not None:
            self.current.run.drive(controller)

    def finish_step(self) -> Decision:
        """Close the current (done) step: its outcome, and whether it ended the mission."""
        d = self.current
        assert d is not None and not self.running
        if d.stopped is not None:
            d.outcome = StepOutcome(trace=[[round(self.body.x, 3), round(self.body.y, 3)]], ends_mission=True,
                                    note=f"safe stop: {d.stopped}")
        elif d.run is None:
            d.outcome = StepOutcome(trace=[[round(self.body.x, 3), round(self.body.y, 3)]],
                                    note=f"invalid action: {d.error}")
        else:
            d.outcome = d.run.finish()
        out = d.outcome
        if out.collision:
            self.collision = out.collision
        elif objective_met(self.objective, self.site, self.state, d.action, out):
            self.success = True
        elif out.ends_mission:
            self.ended = True
        self.current = None
        return d
