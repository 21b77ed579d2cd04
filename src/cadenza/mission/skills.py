"""Skills: how each action step becomes 50 Hz commands for the low-level controller.

Every skill steers the base through the *carrot* it puts in the proxy's goal slot:

* ``walk_forward d``: the carrot runs ahead on the line of travel (the heading at the start), by
  the distance still to go less ``WALK_BRAKE_S`` seconds of the current speed (at most 1.5 m, at
  least 0.05 m): the base walks at its own pace (up to 1.2 m/s) and is asked to slow down early
  enough to stop near the end even on slippery ground. The carrot never falls behind the body, so an
  overshoot never makes the base turn round. The step ends near the end and slow.
* ``crawl_forward d``: crawl posture; the carrot runs 0.35 m ahead on the line of travel, so the base
  moves at about 0.5 m/s (crawling is a lower speed command) and holds the line.
* ``turn_left a`` / ``turn_right a``: the carrot sits 0.05 m away in the target heading, so the base
  turns to face it while barely moving.
* ``climb_step``: needs the step face within 0.6 m ahead and the robot within 30 degrees of square to
  it; then the carrot runs 0.6 m ahead on the line and the body is carried over the edge onto the
  ledge (about 0.9 m/s asked) until the whole body is ``CLIMB_ONTO_M`` (0.2 m) past the edge, so
  that braking and the next turn have room before the drop.
* ``sit`` / ``stand``: posture changes; the base holds the heading for half a second. ``sit`` is the
  signal that ends the search: within ``SIGNAL_M`` of the victim it counts as reaching it; anywhere
  else the mission ends without success.

A step ends when its target is met, on a collision, when the victim is reached, or at its time limit.

**Where the residual acts.** A residual trained on mission episodes acts in every phase (the
controller ignores the weight below). One trained on the default dashes to a goal that end 0.35 m
from it (``NOMINAL.goal_radius``) learned to add forward thrust on the way there, never to stop,
turn on the spot or hold a posture. For it, each tick the skill sets the residual's weight
(:func:`residual_weight`): full while it travels toward a carrot at least ``RESIDUAL_FULL_M`` away,
fading to none at ``RESIDUAL_OFF_M`` (so the walk's braking is the base's own), and none in turns and
posture changes. The weight is computed from the exact carrot distance, not the noisy observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cadenza.mission.actions import ActionStep
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController
from cadenza.mission.world import REACH_M, ROBOT_R, SIGNAL_M, BodyState, Site, collision_kind
from cadenza.tasks.proxy.rescue_dog import NOMINAL

# The parameters each skill reads; [mission.actions] must match these.
SKILL_PARAMS: dict[str, tuple[str, ...]] = {
    "walk_forward": ("distance_m",),
    "crawl_forward": ("distance_m",),
    "turn_left": ("degrees",),
    "turn_right": ("degrees",),
    "climb_step": (),
    "sit": (),
    "stand": (),
}
CRAWL_LEAD_M = 0.35
TURN_LEAD_M = 0.05
HOLD_LEAD_M = 0.1
CLIMB_REACH_M = 0.6
CLIMB_MAX_DEG = 30.0
CLIMB_LEAD_M = 0.6
CLIMB_ONTO_M = 0.2  # the climb ends with the whole body this far onto the ledge (room to brake and turn)
WALK_MAX_LEAD_M = 1.5  # beyond the base's slow-down radius: full speed
WALK_MIN_LEAD_M = 0.05  # the carrot is never closer than this ahead of the body's projection
WALK_BRAKE_S = 0.6  # the carrot leads by the distance to go less this many seconds of the speed
WALK_TOL_M = 0.12  # the walk ends this close to its end ...
WALK_STOP_SPEED = 0.25  # ... once the body is slower than this (m/s)
RESIDUAL_OFF_M = NOMINAL.goal_radius  # the residual never saw a goal closer than this
RESIDUAL_FULL_M = 0.5  # full residual from this carrot distance on
TRACE_EVERY = 5  # ticks between recorded path points (10 Hz)


@dataclass
class StepOutcome:
    """What one action step did."""

    ticks: int = 0
    progress_m: float = 0.0  # decrease of the distance to the victim
    collision: str | None = None  # "rock" | "debris" | "step" | "ledge"
    reached: bool = False  # the victim was reached during this step
    ends_mission: bool = False  # the step ends the mission whatever else happened (``sit``)
    note: str | None = None  # why the step did nothing, or how it ended early
    trace: list[list[float]] = field(default_factory=list)  # [x, y] at 10 Hz, first and last included

    def as_dict(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "seconds": round(self.ticks * ProxyBody.dt, 2),
                "progress_m": round(self.progress_m, 3), "collision_kind": self.collision,
                "reached": self.reached, "ends_mission": self.ends_mission, "note": self.note}


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


class _Skill:
    posture: str | None = None  # posture taken for this step (None: keep)
    climbing = False

    def __init__(self, body: ProxyBody) -> None:
        self.x0, self.y0, self.yaw0 = body.x, body.y, body.yaw
        self.hx, self.hy = math.cos(self.yaw0), math.sin(self.yaw0)
        self.max_ticks = 25

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        return body.x + HOLD_LEAD_M * self.hx, body.y + HOLD_LEAD_M * self.hy

    def done(self, body: ProxyBody) -> bool:
        return False

    def residual_weight(self, carrot_m: float) -> float:
        """How much of the residual's correction to apply this tick (0: the base alone)."""
        return 0.0


def residual_weight(carrot_m: float) -> float:
    """The residual's weight while travelling toward a carrot ``carrot_m`` away: 1 from
    ``RESIDUAL_FULL_M`` on, 0 at ``RESIDUAL_OFF_M`` and closer, linear between."""
    if carrot_m >= RESIDUAL_FULL_M:
        return 1.0
    if carrot_m <= RESIDUAL_OFF_M:
        return 0.0
    return (carrot_m - RESIDUAL_OFF_M) / (RESIDUAL_FULL_M - RESIDUAL_OFF_M)


class _Travel(_Skill):
    """A skill that moves the body along the line of its heading at the start."""

    def along(self, body: ProxyBody) -> float:
        return (body.x - self.x0) * self.hx + (body.y - self.y0) * self.hy

    def on_line(self, s: float) -> tuple[float, float]:
        return self.x0 + s * self.hx, self.y0 + s * self.hy

    def residual_weight(self, carrot_m: float) -> float:
        return residual_weight(carrot_m)


def walk_lead(to_go: float, speed_along: float) -> float:
    """How far ahead of the body's projection the walk's carrot sits (see the module docstring)."""
    return min(max(to_go - WALK_BRAKE_S * max(speed_along, 0.0), WALK_MIN_LEAD_M), WALK_MAX_LEAD_M)


class _Walk(_Travel):
    posture = "standing"

    def __init__(self, body: ProxyBody, d: float) -> None:
        super().__init__(body)
        self.d = d
        self.max_ticks = int((2.0 + d / 0.8) / body.dt)

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        along = self.along(body)
        vx, vy = body.velocity
        lead = walk_lead(self.d - along, self.hx * vx + self.hy * vy)
        return self.on_line(max(along, 0.0) + lead)

    def done(self, body: ProxyBody) -> bool:
        return self.d - self.along(body) < WALK_TOL_M and body.speed < WALK_STOP_SPEED


class _Line(_Travel):
    """Follow the heading line with a carrot ``lead`` metres ahead of the body's projection."""

    lead = CRAWL_LEAD_M

    def __init__(self, body: ProxyBody, d: float) -> None:
        super().__init__(body)
        self.d = d
        self.max_ticks = int((2.0 + d / 0.35) / body.dt)

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        # the carrot stops a little past the end, so the body slows down but is always drawn on
        return self.on_line(min(max(self.along(body), 0.0) + self.lead, self.d + 0.1))

    def done(self, body: ProxyBody) -> bool:
        return self.along(body) >= self.d - 0.03


class _Crawl(_Line):
    posture = "crawling"


class _Climb(_Line):
    posture = "standing"
    climbing = True
    lead = CLIMB_LEAD_M

    def __init__(self, body: ProxyBody, step_x: float) -> None:
        travel = (step_x + ROBOT_R + CLIMB_ONTO_M + 0.03 - body.x) / max(math.cos(body.yaw), 0.5)
        super().__init__(body, travel)
        self.step_x = step_x
        self.max_ticks = int(4.0 / body.dt)

    def done(self, body: ProxyBody) -> bool:
        return body.x - ROBOT_R > self.step_x + CLIMB_ONTO_M


class _Turn(_Skill):
    def __init__(self, body: ProxyBody, degrees: float) -> None:
        super().__init__(body)
        self.target = self.yaw0 + math.radians(degrees)
        self.max_ticks = int((1.2 + abs(degrees) / 90.0) / body.dt)

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        return body.x + TURN_LEAD_M * math.cos(self.target), body.y + TURN_LEAD_M * math.sin(self.target)

    def done(self, body: ProxyBody) -> bool:
        return abs(_wrap(self.target - body.yaw)) < math.radians(3.0) and abs(body.yaw_rate) < 0.5


class _Posture(_Skill):
    def __init__(self, body: ProxyBody, posture: str) -> None:
        super().__init__(body)
        self.posture = posture


def climb_refusal(site: Site, state: BodyState) -> str | None:
    """Why ``climb_step`` cannot start here, or ``None`` when it can."""
    if state.on_ledge:
        return "already on the ledge: nothing to climb"
    edge = site.step_x - state.x - ROBOT_R
    if edge > CLIMB_REACH_M:
        return f"no step within reach (the step face is {edge:.2f} m ahead, reach {CLIMB_REACH_M} m)"
    off = abs(math.degrees(_wrap(state.yaw)))
    if off > CLIMB_MAX_DEG:
        return f"not square to the step ({off:.0f} deg off, at most {CLIMB_MAX_DEG:.0f})"
    return None


def make_skill(step: ActionStep, body: ProxyBody, site: Site, state: BodyState) -> _Skill | str:
    """The skill for ``step`` (already checked against the vocabulary), or a refusal note."""
    n, p = step.name, step.params
    if n == "walk_forward":
        return _Walk(body, p["distance_m"])
    if n == "crawl_forward":
        return _Crawl(body, p["distance_m"])
    if n in ("turn_left", "turn_right"):
        return _Turn(body, p["degrees"] if n == "turn_left" else -p["degrees"])
    if n == "climb_step":
        why = climb_refusal(site, state)
        return why if why else _Climb(body, site.step_x)
    if n == "sit":
        return _Posture(body, "sitting")
    if n == "stand":
        return _Posture(body, "standing")
    raise ValueError(f"no skill for action {n!r}")


class StepRun:
    """One action step in progress, tick by tick (re-entrant, so a batch of robots can share a physics step).

    ``begin`` (construction) picks the skill and starts the step; then, until :attr:`done`, each tick is
    :meth:`prepare` (puts the carrot in the goal slot, returns the residual's weight), one physics tick
    of the body, and :meth:`after_tick`; :meth:`finish` gives the step's outcome.
    """

    def __init__(self, step: ActionStep, site: Site, state: BodyState, body: ProxyBody) -> None:
        self.step, self.site, self.state, self.body = step, site, state, body
        self.out = StepOutcome(trace=[[round(body.x, 3), round(body.y, 3)]])
        self.d0 = site.victim_distance(body.x, body.y)
        skill = make_skill(step, body, site, state)
        self.done = isinstance(skill, str)
        self.refused = self.done
        if isinstance(skill, str):
            self.out.note = skill
            return
        self.skill = skill
        if skill.posture is not None:
            state.posture = skill.posture
        body.start_step()
        self.limit = min(skill.max_ticks, ProxyBody.horizon)

    def prepare(self) -> float:
        """Before a tick: set this tick's carrot; returns the residual's weight for it."""
        body = self.body
        cx, cy = self.skill.carrot(body)
        body.set_carrot(cx, cy)
        return self.skill.residual_weight(math.hypot(cx - body.x, cy - body.y))

    def after_tick(self) -> bool:
        """After a tick: update the pose and check how the step stands; returns :attr:`done`."""
        skill, site, state, body, out = self.skill, self.site, self.state, self.body, self.out
        state.x, state.y, state.yaw = body.x, body.y, body.yaw
        finished = skill.done(body)
        if skill.climbing and finished:
            state.on_ledge = True
        out.ticks += 1
        if out.ticks % TRACE_EVERY == 0:
            out.trace.append([round(body.x, 3), round(body.y, 3)])
        out.collision = collision_kind(site, state, skill.climbing and not finished)
        if out.collision:
            self.done = True
        elif site.victim_distance(body.x, body.y) < REACH_M:
            out.reached = True
            self.done = True
        elif finished:
            self.done = True
        elif out.ticks >= self.limit:
            self.done = True
            out.note = "time limit"
            if skill.climbing:  # stopped part-way: the body is wherever its centre is
                state.on_ledge = body.x > site.step_x
                out.collision = collision_kind(site, state, False)
        return self.done

    def drive(self, controller: LowLevelController) -> None:
        """Tick this step's body alone with ``controller`` until the step is done."""
        body = self.body
        while not self.done:
            weight = self.prepare()
            body.step(controller.act(body.observe(), weight))
            self.after_tick()

    def finish(self) -> StepOutcome:
        """The step's outcome (call once :attr:`done`)."""
        out, body, site = self.out, self.body, self.site
        if self.refused:
            return out
        if self.step.name == "sit" and out.collision is None and not out.reached:
            out.ends_mission = True
            dist = site.victim_distance(body.x, body.y)
            out.reached = dist <= SIGNAL_M
            out.note = "signalled beside the victim" if out.reached else f"sat down {dist:.1f} m from the victim"
        if out.trace[-1] != [round(body.x, 3), round(body.y, 3)]:
            out.trace.append([round(body.x, 3), round(body.y, 3)])
        out.progress_m = self.d0 - site.victim_distance(body.x, body.y)
        return out


def execute(step: ActionStep, site: Site, state: BodyState, body: ProxyBody,
            controller: LowLevelController) -> StepOutcome:
    """Run one action step to its end; updates ``state`` (pose, posture, ledge) in place."""
    run = StepRun(step, site, state, body)
    run.drive(controller)
    return run.finish()
