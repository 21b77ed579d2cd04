"""Missions run side by side: one physics batch, one planner per mission, success by objective.

Used for the LoRA head's closed-loop data (the scripted planner's missions, with noise) and its
scorecard (the head and the scripted planner on the same held-out sites). Each mission is the
mission state machine ``env run`` uses (:class:`cadenza.mission.episode.Mission`): the site from its
seed, the skills driven by the project's frozen base at the given perturbation level, at most
``max_steps`` action steps, success when the goal's objective is met without a collision. Here the
missions share one :class:`RescueDogProxy` batch, so the physics of all of them is one numpy tick
(about ten times faster than one ``env run`` mission after another).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.body import ProxyBody, step_batch
from cadenza.mission.episode import Mission
from cadenza.mission.planners import Planner, PlannerInput, ScriptedPlanner
from cadenza.mission.world import BodyState, Site
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy

MAX_TICKS = 5000  # a mission's time limit (100 s at 50 Hz)


@dataclass(frozen=True)
class MissionSpec:
    seed: int  # the site's seed (Site.generate)
    objective: str
    goal: str


@dataclass
class MissionOutcome:
    spec: MissionSpec
    success: bool = False
    collision: str | None = None
    steps: int = 0
    invalid: int = 0  # steps the vocabulary refused (zero by construction for the head; still counted)
    unsafe: int = 0  # steps that ended in a collision (walking in the debris, into the step, on a rock)
    abstained: bool = False
    reason: str = "step limit"
    plan: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """One decision of a mission: what the planner saw, the step before, the step taken."""

    mission: int
    index: int
    observation: dict[str, Any]
    prev: ActionStep | None
    taken: ActionStep
    label: ActionStep  # what the labeller (the expert) would have done here
    noisy: bool  # the step taken was not the label
    site: Site | None = None  # where the mission is (for state augmentation, cadenza.lora.data)
    state: BodyState | None = None  # the body's pose and posture when the decision was asked for
    detour: float | None = None  # the labeller's memory (ScriptedPlanner.detour) before it labelled


# noise(rng, label, observation, previous step, mission index) -> a step to take instead, or None
Noise = Callable[[np.random.Generator, ActionStep, dict[str, Any], ActionStep | None, int], ActionStep | None]


def expert(vocab: Vocabulary, objective: str) -> ScriptedPlanner:
    """The scripted planner pursuing ``objective`` (the head's teacher and its reference in the scorecard)."""
    return ScriptedPlanner(vocab, objective=objective)


class _Labelled:
    """A planner whose steps are labels: ``noise`` may take another step instead; decisions are recorded."""

    def __init__(self, inner: Planner, i: int, noise: Noise | None, rng: np.random.Generator,
                 out: list[Decision] | None) -> None:
        self.inner, self.i, self.noise, self.rng, self.out = inner, i, noise, rng, out
        self.name = inner.name
        self.mission: Mission | None = None  # set by run_batch: where decisions are recorded from

    def reset(self, goal: str, seed: int) -> None:
        self.inner.reset(goal, seed)

    def plan(self, inp: PlannerInput) -> ActionStep:
        memory = getattr(self.inner, "detour", None)
        label = self.inner.plan(inp)
        prev = inp.history[-1] if inp.history else None
        step, noisy = label, False
        if self.noise is not None:
            alt = self.noise(self.rng, label, inp.observation, prev, self.i)
            if alt is not None and alt != label:
                step, noisy = alt, True
                forget = getattr(self.inner, "forget", None)
                if forget is not None and alt.name != label.name:
                    # another action than the planner's: its plan in progress (a detour) no longer holds; the
                    # same action with other parameters keeps it (a detour turned 25 instead of 30 degrees
                    # still wants the walk past the rock next)
                    forget()
        if self.out is not None:
            m = self.mission
            self.out.append(Decision(self.i, len(inp.history), inp.observation, prev, step, label, noisy,
                                     m.site if m else None, replace(m.state) if m else None, memory))
        return step


def run_batch(specs: list[MissionSpec], planners: list[Planner], vocab: Vocabulary, base: Callable[..., Any], *,
              max_steps: int, perturb: float = 0.0, noise: Noise | None = None, noise_seed: int = 0,
              record: bool = False) -> tuple[list[MissionOutcome], list[Decision]]:
    """Run ``specs[i]`` with ``planners[i]``; returns the outcomes and (``record``) every decision.

    With ``noise``, the planner is the labeller: at each decision its step is the label, and
    ``noise`` may replace the step actually taken (a DART-style perturbation, or a learner's step for a
    DAgger round); the planner is told (``forget()``) when another action than its own was taken.
    """
    n = len(specs)
    if n == 0:
        return [], []
    env = RescueDogProxy(num_envs=n, level=perturb, autoreset=False)
    env.reset(seed=int(specs[0].seed) % (2**31))
    rng = np.random.default_rng([noise_seed, 0x10A])
    decisions: list[Decision] = []
    outs = [MissionOutcome(s) for s in specs]
    missions: list[Mission] = []
    for i, s in enumerate(specs):
        site = Site.generate(s.seed)
        body = ProxyBody.in_batch(env, i, site.rocks, site.start_yaw)
        p: Planner = planners[i]
        if noise is not None or record:
            p = _Labelled(p, i, noise, rng, decisions if record else None)
        missions.append(Mission(site, body, p, vocab, s.goal, max_steps=max_steps, seed=s.seed, objective=s.objective))
        if isinstance(p, _Labelled):
            p.mission = missions[-1]
    ticks = np.zeros(n, dtype=int)

    def settle(i: int) -> None:
        """Close the finished step; begin the next one that needs ticks (refused and invalid ones take none)."""
        m, out = missions[i], outs[i]
        while True:
            d = m.finish_step()
            out.plan.append(d.action.text())
            out.invalid += d.error is not None
            out.abstained |= d.stopped is not None
            out.unsafe += d.outcome is not None and d.outcome.collision is not None
            if m.over:
                return
            m.decide(m.observation())
            if m.running:
                m.current.run.prepare()  # type: ignore[union-attr]
                return

    for i, m in enumerate(missions):
        m.decide(m.observation())
        if m.running:
            m.current.run.prepare()  # type: ignore[union-attr]
        else:
            settle(i)
    zero = np.zeros((n, 3))
    while True:
        active = np.array([m.running for m in missions])
        if not active.any():
            break
        a = np.asarray(base(env.observe()), dtype=np.float64)
        step_batch(env, np.where(active[:, None], a, zero))
        for i in np.flatnonzero(active):
            m = missions[i]
            ticks[i] += 1
            run = m.current.run  # type: ignore[union-attr]
            if run.after_tick():
                settle(i)
            elif ticks[i] >= MAX_TICKS:
                run.done = True
                outs[i].reason = "time limit"
                m.finish_step()
                m.ended = True
            else:
                run.prepare()
    for m, out in zip(missions, outs, strict=True):
        out.success, out.collision, out.steps = m.success, m.collision, m.steps
        if m.success:
            out.reason = "objective met"
        elif m.collision:
            out.reason = f"collision: {m.collision}"
        elif out.abstained:
            out.reason = "safe stop (abstained)"
        elif m.ended and out.reason != "time limit":
            out.reason = "mission ended (sat away from the victim)"
    return outs, decisions
