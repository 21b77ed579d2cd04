"""The offline failure miner: failed missions grouped into failure modes, each with evidence and counts.

A failed mission is classified by how it ended and by the step that ended it:

* ``<kind>-after-<action>``: a collision (``rock``, ``debris``, ``step``, ``ledge``) during that action
  (turns of either side are one action, ``turn``), with the zone it happened in (approaching the debris
  field or the step, between them, past the last feature);
* ``timeout``: the mission used all its steps;
* ``sat-far``: it sat down (ending the search) away from the victim;
* ``ended``: any other end.

Invalid or repaired steps (``--policy llm``) are a mode of their own (``invalid-step``), counted over
every mission. The miner also measures what the body did on the logged steps that ended well (how far
walks over- or undershot, how much the heading drifted per metre walked, how far turns on the spot
moved the body): the local judge sets rule parameters from these numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cadenza.judge.runs import MissionView, RunSet, StepView

COLLISION_WHAT = {"rock": "hit a rock", "debris": "stood or walked in the low debris",
                  "step": "walked into the step face", "ledge": "stepped off the ledge"}


@dataclass(frozen=True)
class Evidence:
    run_id: str
    episode: int
    seed: int
    step: int
    action: str  # the action text of the step that failed
    detail: str  # what the observation said before it (distances), in the miner's own words

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "episode": self.episode, "seed": self.seed, "step": self.step,
                "action": self.action, "detail": self.detail}


@dataclass
class FailureMode:
    id: str
    summary: str  # one line: what went wrong, where, after which action
    missions: int  # missions that ended this way
    of: int  # missions read
    evidence: list[Evidence] = field(default_factory=list)  # up to MAX_EVIDENCE examples
    zones: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.missions / self.of if self.of else 0.0

    def line(self) -> str:
        return f"{self.id}: {self.summary} ({self.missions} of {self.of} missions)"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "summary": self.summary, "missions": self.missions, "of": self.of,
                "zones": self.zones, "evidence": [e.as_dict() for e in self.evidence]}


MAX_EVIDENCE = 5


@dataclass
class BodyMeasures:
    """What the body did on steps that ended without a collision (quantiles over the logged steps)."""

    walks: int = 0
    overshoot_m: dict[str, float] = field(default_factory=dict)  # travelled minus asked: p50, p90
    drift_deg_per_m: dict[str, float] = field(default_factory=dict)  # heading change per metre walked
    turns: int = 0
    turn_shift_m: dict[str, float] = field(default_factory=dict)  # how far a turn on the spot moved the body

    def as_dict(self) -> dict[str, Any]:
        return {"walks": self.walks, "overshoot_m": self.overshoot_m, "drift_deg_per_m": self.drift_deg_per_m,
                "turns": self.turns, "turn_shift_m": self.turn_shift_m}


@dataclass
class MiningReport:
    missions: int
    failures: int
    modes: list[FailureMode]  # most frequent first
    body: BodyMeasures

    def as_dict(self) -> dict[str, Any]:
        return {"missions": self.missions, "failures": self.failures, "modes": [m.as_dict() for m in self.modes],
                "body": self.body.as_dict()}


def action_family(name: str) -> str:
    return "turn" if name in ("turn_left", "turn_right") else name


def zone(obs: dict[str, Any]) -> str:
    """Where the robot was: approaching the debris / the step, inside the debris, or past both features."""
    debris, step = obs.get("debris") or {}, obs.get("step") or {}
    if debris.get("state") == "inside":
        return "inside the debris field"
    ahead = [(f.get("edge_m", math.inf), name) for name, f in (("debris field", debris), ("step", step))
             if f.get("state") == "ahead"]
    if not ahead:
        return "past both features"
    return f"approaching the {min(ahead)[1]}"


def describe(obs: dict[str, Any]) -> str:
    """The distances that matter for a failure, in the miner's words (never a copy of the log text)."""
    bits = []
    for name, key in (("debris edge", "debris"), ("step face", "step")):
        f = obs.get(key) or {}
        if f.get("state") == "ahead":
            bits.append(f"{name} {f.get('edge_m')} m, off square by {abs(f.get('normal_deg', 0))} deg")
    rocks = obs.get("rocks") or []
    if rocks:
        r = rocks[0]
        clear = r.get("distance_m", 0) - r.get("radius_m", 0)
        bits.append(f"nearest rock {clear:.2f} m from its edge at {r.get('bearing_deg')} deg")
    v = obs.get("victim") or {}
    if v:
        bits.append(f"victim {v.get('distance_m')} m")
    return "; ".join(bits) or "no observation"


def _q(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p = np.percentile(np.asarray(values, float), [50, 90])
    return {"p50": round(float(p[0]), 3), "p90": round(float(p[1]), 3)}


def measure_body(missions: list[MissionView]) -> BodyMeasures:
    over, drift, shift = [], [], []
    for m in missions:
        for s in m.steps:
            if s.collision or not s.valid:
                continue
            moved = math.hypot(s.pose1[0] - s.pose0[0], s.pose1[1] - s.pose0[1])
            if s.action == "walk_forward" and "distance_m" in s.params:
                over.append(moved - float(s.params["distance_m"]))
                turn = abs((s.pose1[2] - s.pose0[2] + 180.0) % 360.0 - 180.0)
                drift.append(turn / max(moved, 0.2))
            elif action_family(s.action) == "turn":
                shift.append(moved)
    return BodyMeasures(len(over), _q(over), _q(drift), len(shift), _q(shift))


def _classify(m: MissionView) -> tuple[str, str, StepView | None]:
    last = m.steps[-1] if m.steps else None
    if m.collision and last is not None:
        fam = action_family(last.action)
        return f"{m.collision}-after-{fam}", f"{COLLISION_WHAT.get(m.collision, m.collision)} during {fam}", last
    if m.reason == "step limit":
        return "timeout", "used every step without reaching the victim", last
    if m.reason.startswith("sat down"):
        return "sat-far", "sat down (ending the search) away from the victim", last
    return "ended", f"ended without reaching the victim ({m.reason[:60]})", last


def mine(runs: RunSet) -> MiningReport:
    """Group the failed missions of ``runs`` into failure modes (most frequent first) and measure the body."""
    n = len(runs.missions)
    groups: dict[str, FailureMode] = {}
    zones: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in runs.failures:
        mode_id, summary, last = _classify(m)
        fm = groups.setdefault(mode_id, FailureMode(mode_id, summary, 0, n))
        fm.missions += 1
        if last is not None:
            zones[mode_id][zone(last.observation)] += 1
            if len(fm.evidence) < MAX_EVIDENCE:
                fm.evidence.append(Evidence(m.run_id, m.episode, m.seed, last.index, last.text,
                                            describe(last.observation)))
    invalid = [(m, s) for m in runs.missions for s in m.steps if not s.valid or (s.planner or {}).get("repair")]
    if invalid:
        fm = FailureMode("invalid-step", "the planner gave a step outside the vocabulary or format",
                         len({(m.run_id, m.episode) for m, _ in invalid}), n)
        fm.evidence = [Evidence(m.run_id, m.episode, m.seed, s.index, s.text, "invalid or repaired reply")
                       for m, s in invalid[:MAX_EVIDENCE]]
        groups[fm.id] = fm
    for mode_id, z in zones.items():
        groups[mode_id].zones = dict(sorted(z.items(), key=lambda kv: -kv[1]))
        top = next(iter(groups[mode_id].zones))
        groups[mode_id].summary += f", mostly {top}"
    modes = sorted(groups.values(), key=lambda f: (-f.missions, f.id))
    return MiningReport(n, len(runs.failures), modes, measure_body(runs.missions))
