"""What the decoder sees besides the goal, and how a step is written as numbers.

* **observation**: the planners' observation summary flattened by
  :func:`cadenza.mission.world.state_vector` (distances in metres, bearings as sin/cos), scaled to a
  few units, plus a flag saying an observation is present. A training example added with
  ``env lora add`` has no observation (it is a plan for the goal as a whole): its features are zeros
  with the flag off, which is also what ``env lora decode`` uses.
* **the previous step**: one slot per vocabulary action (one-hot, plus "none" at the start) and one
  slot per (action, parameter) pair holding the parameter's position in its range, in [0, 1].

A step is the same encoding: the action's index and the positions of its parameters. Positions
are turned back into values as ``lo + u * (hi - lo)`` with ``u`` in [0, 1], so a decoded
parameter can never leave its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.world import ROBOT_R, ROCKS_REPORTED, STATE_NAMES, state_vector

OBS_SCALE = 0.2  # metres in the summary are multiplied by this (sites are ~10 m long)


@dataclass(frozen=True)
class StepCodec:
    """The vocabulary as decoder slots: actions (plus END), and one slot per (action, parameter)."""

    actions: tuple[str, ...]
    slots: tuple[tuple[str, str, float, float], ...]  # (action, param, lo, hi)

    @classmethod
    def from_vocabulary(cls, vocab: Vocabulary) -> StepCodec:
        slots = tuple((a, p, lo, hi) for a, ps in vocab.actions.items() for p, (lo, hi) in ps.items())
        return cls(tuple(vocab.names), slots)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def end(self) -> int:
        """Index of the END token (after the actions)."""
        return len(self.actions)

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    @property
    def step_dim(self) -> int:
        """Size of a step's encoding as decoder input: actions + none/BOS + parameter slots."""
        return self.n_actions + 1 + self.n_slots

    def slots_of(self, action: str) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s[0] == action]

    def encode(self, step: ActionStep | None) -> list[float]:
        """A step (or ``None``: no previous step) as ``step_dim`` floats."""
        out = [0.0] * self.step_dim
        if step is None:
            out[self.n_actions] = 1.0
            return out
        out[self.actions.index(step.name)] = 1.0
        for i in self.slots_of(step.name):
            _, p, lo, hi = self.slots[i]
            out[self.n_actions + 1 + i] = position(float(step.params[p]), lo, hi)
        return out

    def target(self, step: ActionStep) -> tuple[int, list[float], list[float]]:
        """(action index, slot positions, slot mask) of a training target."""
        pos, mask = [0.0] * self.n_slots, [0.0] * self.n_slots
        for i in self.slots_of(step.name):
            _, p, lo, hi = self.slots[i]
            pos[i], mask[i] = position(float(step.params[p]), lo, hi), 1.0
        return self.actions.index(step.name), pos, mask

    def step(self, action: int, positions: list[float]) -> ActionStep:
        """Build the step for ``action`` from slot positions in [0, 1] (values rounded inside the range)."""
        name = self.actions[action]
        params = {}
        for i in self.slots_of(name):
            _, p, lo, hi = self.slots[i]
            u = min(max(float(positions[i]), 0.0), 1.0)
            params[p] = min(max(round(lo + u * (hi - lo), 2), lo), hi)
        return ActionStep(name, params)

    def as_dict(self) -> dict[str, Any]:
        return {"actions": list(self.actions), "slots": [list(s) for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepCodec:
        return cls(tuple(d["actions"]), tuple((a, p, float(lo), float(hi)) for a, p, lo, hi in d["slots"]))


def position(v: float, lo: float, hi: float) -> float:
    return 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)


HEADINGS = (-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0)  # degrees, + = left
CLEAR_MAX_M = 4.0  # free-path lengths are measured up to this far
CLEAR_MARGIN_M = 0.15  # ... keeping this much room between the body and a rock's edge
DERIVED = 2 + ROCKS_REPORTED * 4 + len(HEADINGS) + 1 + 2 + ROCKS_REPORTED
DEG_SCALE = 1.0 / 90.0  # bearings also given in degrees (a turn's parameter is linear in them)
OBS_DIM = len(STATE_NAMES) + DERIVED + 1
_METRES = {i for i, n in enumerate(STATE_NAMES) if n.endswith("_m")}


def _along_across(d: float, bearing_deg: float) -> tuple[float, float]:
    b = math.radians(bearing_deg)
    return d * math.cos(b), d * math.sin(b)


def free_path(obs: dict[str, Any], heading_deg: float, length: float = CLEAR_MAX_M,
              margin: float = CLEAR_MARGIN_M) -> float:
    """How far a straight walk on ``heading_deg`` (relative) can go, up to ``length``, with the body
    ``margin`` clear of every reported rock (plain geometry on the summary, as a perception stack's
    free-space estimate would give)."""
    for rock in obs["rocks"]:
        b = math.radians(float(rock["bearing_deg"]) - heading_deg)
        along, across = float(rock["distance_m"]) * math.cos(b), float(rock["distance_m"]) * math.sin(b)
        keep = float(rock["radius_m"]) + ROBOT_R + margin
        if abs(across) >= keep or along <= 0.0:
            continue
        length = min(length, along - math.sqrt(keep**2 - across**2))
    return max(length, 0.0)


def feature_ahead(obs: dict[str, Any]) -> float:
    """Distance along the heading to the nearer feature (debris field or step) ahead, or CLEAR_MAX_M."""
    out = CLEAR_MAX_M
    for f in (obs["debris"], obs["step"]):
        if f.get("state") == "ahead":
            cos = math.cos(math.radians(float(f["normal_deg"])))
            if cos > 0.05:
                out = min(out, float(f["edge_m"]) / cos)
    return out


WALK = "walk_forward"  # the walking action the safety check applies to


def walk_room(obs: dict[str, Any]) -> float:
    """How far a straight walk can go before the body touches a reported rock (:func:`free_path` with no
    margin) or reaches the next feature ahead (:func:`feature_ahead`: walking into the debris field or
    the step face is a collision)."""
    return min(free_path(obs, 0.0, CLEAR_MAX_M, 0.0), feature_ahead(obs))


def safe_step(step: ActionStep, obs: dict[str, Any] | None) -> bool:
    """False for a walk longer than :func:`walk_room` (it would run into a rock, the debris field or the
    step face); every other step, and any step without an observation, is accepted."""
    if obs is None or step.name != WALK:
        return True
    return float(step.params.get("distance_m", 0.0)) <= walk_room(obs)


def observation_features(obs: dict[str, Any] | None) -> list[float]:
    """``OBS_DIM`` floats (all zeros for no observation): the scaled state vector; the victim and each
    reported rock in body coordinates (metres ahead and to the left), each rock's side gap (how far
    its edge is from the body's path, ``|across| - radius - body radius``) and presence; the free path
    on nine headings from 60 degrees right to 60 degrees left (:func:`free_path`) and the distance to
    the next feature ahead (:func:`feature_ahead`); the feature normal's, the victim's and each rock's
    bearing in degrees (scaled), since a turn's parameter is linear in them; and a presence flag."""
    if obs is None:
        return [0.0] * OBS_DIM
    v = state_vector(obs)
    out = [x * OBS_SCALE if i in _METRES else x for i, x in enumerate(v)]
    vic = obs["victim"]
    out += [c * OBS_SCALE for c in _along_across(float(vic["distance_m"]), float(vic["bearing_deg"]))]
    for i in range(ROCKS_REPORTED):
        if i < len(obs["rocks"]):
            r = obs["rocks"][i]
            along, across = _along_across(float(r["distance_m"]), float(r["bearing_deg"]))
            gap = abs(across) - float(r["radius_m"]) - ROBOT_R
            out += [along * OBS_SCALE, across * OBS_SCALE, gap, 1.0]
        else:
            out += [0.0, 0.0, 0.0, 0.0]
    out += [free_path(obs, h) * OBS_SCALE for h in HEADINGS]
    out.append(feature_ahead(obs) * OBS_SCALE)
    normal = obs["debris"].get("normal_deg", obs["step"].get("normal_deg", 0.0))
    out += [float(normal) * DEG_SCALE, float(vic["bearing_deg"]) * DEG_SCALE]
    out += [float(obs["rocks"][i]["bearing_deg"]) * DEG_SCALE if i < len(obs["rocks"]) else 0.0
            for i in range(ROCKS_REPORTED)]
    return [*out, 1.0]
