"""The rescue-dog mission site: zones, rocks and a victim, laid out deterministically from a seed.

The site is a strip along the world x axis. The robot starts at the origin, facing roughly +x.
Two features cross the whole strip, in an order drawn per seed:

* a **debris field** (``x0 <= x <= x1``): low-clearance rubble. Any part of the body inside it while
  standing is a collision; crawling (``crawl_forward``) passes under it.
* a **step** (a ledge whose face is the line ``x = step_x``): walking into the face, or stepping down
  off the ledge, is a collision; ``climb_step`` gets onto it.

Open ground lies before, between and after them, with four round rocks (collisions whatever the
posture) that the low-level controller has to steer around. The victim lies beyond the last feature,
off to one side, so the route turns. The mission succeeds when the body comes within ``REACH_M`` of
the victim, or sits (the signal that ends a search) within ``SIGNAL_M`` of it, without a collision.

Distances in the observation summary are in metres, bearings in degrees relative to the robot's
heading, positive to the left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadenza.tasks.proxy.rescue_dog import NOMINAL, NUM_OBSTACLES

ROBOT_R = NOMINAL.robot_radius  # body radius (m)
REACH_M = 0.6  # the victim is reached within this distance of its centre
SIGNAL_M = 1.0  # sitting (the signal that ends a search) this close to the victim also counts as reaching it
ROCK_REPORT_M = 3.0  # rocks whose clearance is below this appear in the summary
ROCKS_REPORTED = 3  # at most this many, nearest first
POSTURES = ("standing", "crawling", "sitting")


@dataclass(frozen=True)
class Site:
    """One mission site (world frame, metres)."""

    debris_x0: float
    debris_x1: float
    step_x: float
    rocks: np.ndarray  # (NUM_OBSTACLES, 3): x, y, radius
    victim: tuple[float, float]
    start_yaw: float  # radians

    @classmethod
    def generate(cls, seed: int) -> Site:
        rng = np.random.default_rng([int(seed), 0x5173])
        x = rng.uniform(1.6, 2.6)
        debris_first = bool(rng.random() < 0.5)
        depth = rng.uniform(0.8, 1.5)
        gap = rng.uniform(2.5, 3.3)
        if debris_first:
            d0, d1 = x, x + depth
            sx = d1 + gap
            end = sx
        else:
            sx = x
            d0, d1 = sx + gap, sx + gap + depth
            end = d1
        victim = (end + rng.uniform(1.6, 2.8), float(rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 2.0)))
        start_yaw = rng.uniform(-0.35, 0.35)
        ymax_route = abs(victim[1]) + 1.0
        # open stretches where rocks may lie: between the features and after the last one
        mid = (min(d1, sx), max(d0, sx))  # the gap between the two features
        # rocks keep clear of where the robot leaves one feature and stands off before the next
        stretches = [(mid[0] + 1.3, mid[1] - 0.95), (end + 1.3, victim[0] + 0.5)]
        rocks: list[tuple[float, float, float]] = []

        def fits(px: float, py: float, r: float) -> bool:
            if math.hypot(px - victim[0], py - victim[1]) < REACH_M + r + 0.5:
                return False
            return all(math.hypot(px - q[0], py - q[1]) >= r + q[2] + 2 * ROBOT_R + 0.5 for q in rocks)

        for i in range(NUM_OBSTACLES):
            r = rng.uniform(0.15, 0.3)
            for attempt in range(400):
                lo, hi = stretches[(i + attempt // 200) % 2]
                px, py = rng.uniform(lo, hi), rng.uniform(-1.8, 1.8)
                if fits(px, py, r):
                    break
            else:  # no room on the route: put it out of the way, beside the site
                px, py = end + 0.5 * i, (1.0 if i % 2 else -1.0) * (ymax_route + 1.0)
            rocks.append((px, py, r))
        return cls(float(d0), float(d1), float(sx), np.array(rocks), (float(victim[0]), float(victim[1])),
                   float(start_yaw))

    # ------------------------------------------------------------------ serialisation (run logs)
    def as_dict(self) -> dict[str, Any]:
        return {
            "debris": [round(self.debris_x0, 3), round(self.debris_x1, 3)],
            "step_x": round(self.step_x, 3),
            "rocks": [[round(float(v), 3) for v in r] for r in self.rocks],
            "victim": [round(self.victim[0], 3), round(self.victim[1], 3)],
            "start": [0.0, 0.0, round(math.degrees(self.start_yaw), 2)],
            "robot_radius": ROBOT_R,
            "reach_m": REACH_M,
            "signal_m": SIGNAL_M,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Site:
        return cls(float(d["debris"][0]), float(d["debris"][1]), float(d["step_x"]), np.asarray(d["rocks"], float),
                   (float(d["victim"][0]), float(d["victim"][1])), math.radians(float(d["start"][2])))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Map bounds ``(xmin, xmax, ymin, ymax)`` for drawing."""
        xmax = max(self.victim[0], float(self.rocks[:, 0].max())) + 1.0
        ymax = max(2.4, abs(self.victim[1]) + 0.9)
        return -0.8, xmax, -ymax, ymax

    # ------------------------------------------------------------------ geometry
    def in_debris(self, x: float) -> bool:
        """Does a body centred at ``x`` overlap the debris field?"""
        return x + ROBOT_R > self.debris_x0 and x - ROBOT_R < self.debris_x1

    def rock_clearance(self, x: float, y: float) -> float:
        d = np.hypot(self.rocks[:, 0] - x, self.rocks[:, 1] - y) - self.rocks[:, 2] - ROBOT_R
        return float(d.min())

    def victim_distance(self, x: float, y: float) -> float:
        return math.hypot(self.victim[0] - x, self.victim[1] - y)


@dataclass
class BodyState:
    """What the mission layer tracks about the robot besides the physics."""

    x: float
    y: float
    yaw: float
    posture: str = "standing"
    on_ledge: bool = False


def collision_kind(site: Site, s: BodyState, climbing: bool) -> str | None:
    """The collision the body is in right now, or ``None``."""
    if site.rock_clearance(s.x, s.y) < 0.0:
        return "rock"
    if s.posture == "standing" and site.in_debris(s.x):
        return "debris"
    if not climbing:
        if not s.on_ledge and s.x + ROBOT_R > site.step_x:
            return "step"
        if s.on_ledge and s.x - ROBOT_R < site.step_x:
            return "ledge"
    return None


COLLISION_TEXT = {
    "rock": "hit a rock",
    "debris": "stood or walked in the low debris",
    "step": "walked into the step face",
    "ledge": "stepped off the ledge",
}


def _bearing(dx: float, dy: float, yaw: float) -> float:
    """Bearing of the world vector (dx, dy) relative to heading ``yaw``, degrees, + = left."""
    a = math.atan2(dy, dx) - yaw
    return math.degrees(math.atan2(math.sin(a), math.cos(a)))


def observe(site: Site, s: BodyState) -> dict[str, Any]:
    """The planner's observation summary (plain JSON types, rounded as a perception stack would report).

    Feature distances (``edge_m``, ``exit_m``) are measured along the feature's normal (the +x axis)
    from the body's edge; ``normal_deg`` is the bearing of that normal, i.e. how far to turn to face the
    feature square on.
    """
    normal = round(_bearing(1.0, 0.0, s.yaw))
    if site.in_debris(s.x):
        debris: dict[str, Any] = {"state": "inside", "exit_m": round(site.debris_x1 + ROBOT_R - s.x, 2)}
    elif s.x + ROBOT_R <= site.debris_x0:
        debris = {"state": "ahead", "edge_m": round(site.debris_x0 - s.x - ROBOT_R, 2)}
    else:
        debris = {"state": "passed"}
    if debris["state"] != "passed":
        debris["depth_m"] = round(site.debris_x1 - site.debris_x0, 2)
        debris["normal_deg"] = normal
    if s.on_ledge:
        step: dict[str, Any] = {"state": "passed"}
    else:
        step = {"state": "ahead", "edge_m": round(site.step_x - s.x - ROBOT_R, 2), "normal_deg": normal}
    rocks = []
    clear = np.hypot(site.rocks[:, 0] - s.x, site.rocks[:, 1] - s.y) - site.rocks[:, 2] - ROBOT_R
    for i in np.argsort(clear)[:ROCKS_REPORTED]:
        if clear[i] > ROCK_REPORT_M:
            break
        rx, ry, rr = site.rocks[i]
        rocks.append({"distance_m": round(math.hypot(rx - s.x, ry - s.y), 2),
                      "bearing_deg": round(_bearing(rx - s.x, ry - s.y, s.yaw)),
                      "radius_m": round(float(rr), 2)})
    vx, vy = site.victim
    return {
        "posture": s.posture,
        "on_ledge": s.on_ledge,
        "victim": {"distance_m": round(math.hypot(vx - s.x, vy - s.y), 2),
                   "bearing_deg": round(_bearing(vx - s.x, vy - s.y, s.yaw))},
        "debris": debris,
        "step": step,
        "rocks": rocks,
    }


def _side(deg: float) -> str:
    if abs(deg) < 1:
        return "dead ahead"
    return f"{abs(deg):.0f} deg {'left' if deg > 0 else 'right'}"


def summary_text(obs: dict[str, Any]) -> str:
    """One line of text for prompts, e.g. ``standing; victim 6.1 m, 12 deg right; debris field ...``."""
    parts = [obs["posture"] + (" on the ledge" if obs["on_ledge"] else "")]
    v = obs["victim"]
    parts.append(f"victim {v['distance_m']:.1f} m, {_side(v['bearing_deg'])}")
    d = obs["debris"]
    if d["state"] == "inside":
        parts.append(f"inside the debris field, {d['exit_m']:.2f} m to its far edge (normal {_side(d['normal_deg'])})")
    elif d["state"] == "ahead":
        parts.append(f"debris field {d['edge_m']:.2f} m ahead, {d['depth_m']:.1f} m deep (normal "
                     f"{_side(d['normal_deg'])})")
    else:
        parts.append("debris field passed")
    st = obs["step"]
    if st["state"] == "ahead":
        parts.append(f"step {st['edge_m']:.2f} m ahead (normal {_side(st['normal_deg'])})")
    else:
        parts.append("step climbed")
    if obs["rocks"]:
        parts.append("rocks: " + ", ".join(f"{r['distance_m']:.1f} m {_side(r['bearing_deg'])} (r {r['radius_m']:.2f})"
                                           for r in obs["rocks"]))
    else:
        parts.append("no rocks near")
    return "; ".join(parts)


# The observation summary as a fixed-length numeric vector (for LeRobot-style exports).
STATE_NAMES: tuple[str, ...] = (
    "victim.distance_m", "victim.bearing_sin", "victim.bearing_cos",
    "posture.standing", "posture.crawling", "posture.sitting", "on_ledge",
    "debris.ahead", "debris.inside", "debris.passed", "debris.edge_m", "debris.exit_m", "debris.depth_m",
    "step.ahead", "step.edge_m", "feature.normal_sin", "feature.normal_cos",
    *(f"rock{i}.{k}" for i in range(ROCKS_REPORTED) for k in ("distance_m", "bearing_sin", "bearing_cos", "radius_m")),
)


def state_vector(obs: dict[str, Any]) -> list[float]:
    """Flatten an observation summary into ``len(STATE_NAMES)`` floats (absent values are 0)."""
    def sc(deg: float) -> tuple[float, float]:
        r = math.radians(deg)
        return math.sin(r), math.cos(r)

    v = obs["victim"]
    d, st = obs["debris"], obs["step"]
    out = [float(v["distance_m"]), *sc(v["bearing_deg"])]
    out += [float(obs["posture"] == p) for p in POSTURES] + [float(bool(obs["on_ledge"]))]
    out += [float(d["state"] == k) for k in ("ahead", "inside", "passed")]
    out += [float(d.get("edge_m", 0.0)), float(d.get("exit_m", 0.0)), float(d.get("depth_m", 0.0))]
    out += [float(st["state"] == "ahead"), float(st.get("edge_m", 0.0))]
    normal = d.get("normal_deg", st.get("normal_deg"))
    out += list(sc(normal)) if normal is not None else [0.0, 0.0]
    for i in range(ROCKS_REPORTED):
        if i < len(obs["rocks"]):
            r = obs["rocks"][i]
            out += [float(r["distance_m"]), *sc(r["bearing_deg"]), float(r["radius_m"])]
        else:
            out += [0.0, 0.0, 0.0, 0.0]
    return out
