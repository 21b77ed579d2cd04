"""Missions run side by side: one physics batch, one planner per mission, success by objective.

Used for the LoRA head's closed-loop data (the objective expert's rollouts, with noise) and its
scorecard (the head and the scripted expert on the same held-out sites). Each mission is what
``env run`` does for one goal: the site from its seed, the skills of :mod:`cadenza.mission.skills`
driven by the project's frozen base at the given perturbation level, at most ``max_steps`` action
steps; here the missions share one :class:`RescueDogProxy` batch, so the physics of all of them is
one numpy tick (about 20x faster than one ``env run`` mission after another).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cadenza.lora.objectives import PlannerStop, objective_met
from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.body import ProxyBody, step_batch
from cadenza.mission.planners import Planner, PlannerInput
from cadenza.mission.skills import StepRun
from cadenza.mission.world import BodyState, Site, observe
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
    noisy: bool  # the step taken was a perturbed one


# noise(rng, label, observation, previous step, mission index) -> a step to take instead, or None
Noise = Callable[[np.random.Generator, ActionStep, dict[str, Any], ActionStep | None, int], ActionStep | None]


@dataclass
class _Live:
    site: Site
    state: BodyState
    body: ProxyBody
    run: StepRun | None = None
    taken: list[ActionStep] = field(default_factory=list)
    ticks: int = 0
    done: bool = False


def run_batch(specs: list[MissionSpec], planners: list[Planner], vocab: Vocabulary, base: Callable[..., Any], *,
              max_steps: int, perturb: float = 0.0, noise: Noise | None = None, noise_seed: int = 0,
              record: bool = False) -> tuple[list[MissionOutcome], list[Decision]]:
    """Run ``specs[i]`` with ``planners[i]``; returns the outcomes and (``record``) every decision.

    With ``noise``, the planner is the labeller: at each decision its step is the label, and
    ``noise`` may replace the step actually taken (DART-style perturbation); the planner is told
    (``forget()``) when a step it did not choose was taken.
    """
    n = len(specs)
    if n == 0:
        return [], []
    env = RescueDogProxy(num_envs=n, level=perturb, autoreset=False)
    env.reset(seed=int(specs[0].seed) % (2**31))
    rng = np.random.default_rng([noise_seed, 0x10A])
    live: list[_Live] = []
    outs = [MissionOutcome(s) for s in specs]
    decisions: list[Decision] = []
    for i, s in enumerate(specs):
        site = Site.generate(s.seed)
        body = ProxyBody.in_batch(env, i, site.rocks, site.start_yaw)
        live.append(_Live(site, BodyState(body.x, body.y, body.yaw), body))
        planners[i].reset(s.goal, s.seed)

    def begin(i: int) -> None:
        m, out = live[i], outs[i]
        while out.steps < max_steps:
            out.steps += 1
            obs = observe(m.site, m.state)
            prev = m.taken[-1] if m.taken else None
            try:
                proposed = planners[i].plan(PlannerInput(specs[i].goal, "", obs, "", vocab, tuple(m.taken),
                                                         out.steps))
            except PlannerStop as e:
                out.abstained, out.reason, m.done = True, f"safe stop: {e}", True
                return
            step, noisy = proposed, False
            if noise is not None:
                alt = noise(rng, proposed, obs, prev, i)
                if alt is not None and alt != proposed:
                    step, noisy = alt, True
                    forget = getattr(planners[i], "forget", None)
                    if forget is not None:
                        forget()
            try:
                step = vocab.check(step).step
            except ActionError:
                out.invalid += 1
                m.taken.append(step)
                out.plan.append(step.text())
                continue
            if record:
                decisions.append(Decision(i, len(m.taken), obs, prev, step, proposed, noisy))
            m.taken.append(step)
            out.plan.append(step.text())
            run = StepRun(step, m.site, m.state, m.body)
            if not run.done:
                m.run = run
                run.prepare()
                return
            finish(i, run)
            if m.done:
                return
        m.done = True

    def finish(i: int, run: StepRun) -> None:
        m, out = live[i], outs[i]
        res = run.finish()
        if res.collision is not None:
            out.collision, out.unsafe, m.done = res.collision, out.unsafe + 1, True
            out.reason = f"collision: {res.collision}"
        elif objective_met(specs[i].objective, m.site, m.state, run.step, res):
            out.success, out.reason, m.done = True, "objective met", True
        elif res.ends_mission:
            out.reason, m.done = res.note or "mission ended", True

    for i in range(n):
        begin(i)
    zero = np.zeros((n, 3))
    while not all(m.done for m in live):
        active = np.array([not m.done for m in live])
        a = np.asarray(base(env.observe()), dtype=np.float64)
        step_batch(env, np.where(active[:, None], a, zero))
        for i in np.flatnonzero(active):
            m = live[i]
            m.ticks += 1
            run = m.run
            assert run is not None
            if run.after_tick():
                finish(i, run)
                if not m.done:
                    begin(i)
            elif m.ticks < MAX_TICKS:
                run.prepare()
            if not m.done and m.ticks >= MAX_TICKS:
                outs[i].reason, m.done = "time limit", True
    return outs, decisions
