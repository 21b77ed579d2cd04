"""Skills: how each action step becomes 50 Hz commands for the low-level controller.

Every skill steers the base through the *carrot* it puts in the proxy's goal slot:

* ``walk_forward d``: a fixed waypoint ``d`` metres along the heading at the start; the base walks
  there at its own pace (up to 1.2 m/s); the step ends once the body is near it and slow.
* ``crawl_forward d``: crawl posture; the carrot runs 0.35 m ahead on the line of travel, so the base
  moves at about 0.5 m/s (crawling is a lower speed command) and holds the line.
* ``turn_left a`` / ``turn_right a``: the carrot sits 0.08 m away in the target heading, so the base
  turns to face it while barely moving.
* ``climb_step``: needs the step face within 0.6 m ahead and the robot within 30 degrees of square to
  it; then the body is carried slowly over the edge onto the ledge.
* ``sit`` / ``stand``: posture changes; the base holds the heading for half a second. ``sit`` is the
  signal that ends the search: within ``SIGNAL_M`` of the victim it counts as reaching it; anywhere
  else the mission ends without success.

A step ends when its target is met, on a collision, when the victim is reached, or at its time limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cadenza.mission.actions import ActionStep
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController
from cadenza.mission.world import REACH_M, ROBOT_R, SIGNAL_M, BodyState, Site, collision_kind

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
TURN_LEAD_M = 0.08
HOLD_LEAD_M = 0.1
CLIMB_REACH_M = 0.6
CLIMB_MAX_DEG = 30.0
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


class _Walk(_Skill):
    posture = "standing"

    def __init__(self, body: ProxyBody, d: float) -> None:
        super().__init__(body)
        self.tx, self.ty = self.x0 + d * self.hx, self.y0 + d * self.hy
        self.tol = min(0.12, 0.4 * d)
        self.max_ticks = int((2.0 + d / 0.8) / body.dt)

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        return self.tx, self.ty

    def done(self, body: ProxyBody) -> bool:
        return math.hypot(self.tx - body.x, self.ty - body.y) < self.tol and body.speed < 0.25


class _Line(_Skill):
    """Follow the heading line with a carrot ``lead`` metres ahead of the body's projection."""

    lead = CRAWL_LEAD_M

    def __init__(self, body: ProxyBody, d: float) -> None:
        super().__init__(body)
        self.d = d
        self.max_ticks = int((2.0 + d / 0.35) / body.dt)

    def along(self, body: ProxyBody) -> float:
        return (body.x - self.x0) * self.hx + (body.y - self.y0) * self.hy

    def carrot(self, body: ProxyBody) -> tuple[float, float]:
        # the carrot stops a little past the end, so the body slows down but is always drawn on
        s = min(max(self.along(body), 0.0) + self.lead, self.d + 0.1)
        return self.x0 + s * self.hx, self.y0 + s * self.hy

    def done(self, body: ProxyBody) -> bool:
        return self.along(body) >= self.d - 0.03


class _Crawl(_Line):
    posture = "crawling"


class _Climb(_Line):
    posture = "standing"
    climbing = True

    def __init__(self, body: ProxyBody, step_x: float) -> None:
        travel = (step_x + ROBOT_R + 0.05 - body.x) / max(math.cos(body.yaw), 0.5)
        super().__init__(body, travel)
        self.step_x = step_x
        self.max_ticks = int(4.0 / body.dt)

    def done(self, body: ProxyBody) -> bool:
        return body.x - ROBOT_R > self.step_x + 0.02


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


def execute(step: ActionStep, site: Site, state: BodyState, body: ProxyBody,
            controller: LowLevelController) -> StepOutcome:
    """Run one action step to its end; updates ``state`` (pose, posture, ledge) in place."""
    out = StepOutcome(trace=[[round(body.x, 3), round(body.y, 3)]])
    d0 = site.victim_distance(body.x, body.y)
    skill = make_skill(step, body, site, state)
    if isinstance(skill, str):
        out.note = skill
        return out
    if skill.posture is not None:
        state.posture = skill.posture
    body.start_step()
    for tick in range(1, min(skill.max_ticks, ProxyBody.horizon) + 1):
        body.set_carrot(*skill.carrot(body))
        body.step(controller.act(body.observe()))
        state.x, state.y, state.yaw = body.x, body.y, body.yaw
        finished = skill.done(body)
        if skill.climbing and finished:
            state.on_ledge = True
        out.ticks = tick
        if tick % TRACE_EVERY == 0:
            out.trace.append([round(body.x, 3), round(body.y, 3)])
        out.collision = collision_kind(site, state, skill.climbing and not finished)
        if out.collision:
            break
        if site.victim_distance(body.x, body.y) < REACH_M:
            out.reached = True
            break
        if finished:
            break
    else:
        out.note = "time limit"
        if skill.climbing:  # stopped part-way: the body is wherever its centre is
            state.on_ledge = body.x > site.step_x
            out.collision = collision_kind(site, state, False)
    if step.name == "sit" and out.collision is None and not out.reached:
        out.ends_mission = True
        dist = site.victim_distance(body.x, body.y)
        out.reached = dist <= SIGNAL_M
        out.note = "signalled beside the victim" if out.reached else f"sat down {dist:.1f} m from the victim"
    if out.trace[-1] != [round(body.x, 3), round(body.y, 3)]:
        out.trace.append([round(body.x, 3), round(body.y, 3)])
    out.progress_m = d0 - site.victim_distance(body.x, body.y)
    return out
