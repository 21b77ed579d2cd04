"""The local (offline, deterministic) judge: failure modes -> candidate prompts with explicit rules.

For each failure mode the miner found, the judge looks up the planning rules that can answer it
(:data:`ANSWERS`) and sets each rule's number from what the body did in the runs (how far turns on the
spot moved it, how much its heading drifted per metre walked) and from the prompt's current settings.
Every rule names the failure(s) it fixes. Each candidate adds one rule;
after screening, the two best candidates are merged into one more (:func:`merge`). Modes no rule
can answer are listed with the reason (:data:`UNANSWERED`). Which candidate is any good is decided by
missions, never here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from cadenza.judge.mine import BodyMeasures, FailureMode, MiningReport
from cadenza.mission.planners import ScriptedRules
from cadenza.mission.rules import RULE_PARAMS, Rule, read_settings, with_rules


@dataclass
class Candidate:
    text: str
    rules: list[Rule]
    source: str  # "offline" (this judge) or "llm"
    fixes: list[str]  # failure-mode ids
    problems: list[str] = field(default_factory=list)  # invariant violations (a candidate with any is dropped)

    @property
    def label(self) -> str:
        return ", ".join(f"{r.key}={r.value:g}" for r in self.rules) or self.source


def _round(v: float, step: float = 0.05) -> float:
    return round(round(v / step) * step, 3)


def _clip(key: str, v: float) -> float:
    p = RULE_PARAMS[key]
    return min(max(v, p.lo), p.hi)


Proposal = Callable[[ScriptedRules, BodyMeasures], list[tuple[str, float]]]


def _shift(m: BodyMeasures, q: str = "p90", default: float = 0.3) -> float:
    return m.turn_shift_m.get(q, default)


def _into_feature_on_walk(r: ScriptedRules, m: BodyMeasures) -> list[tuple[str, float]]:
    """Walks end in the feature: shorter last leg (square up closer), or shorter legs overall: the leg over
    which the median heading drift reaches the at-edge tolerance, and half as long again."""
    drift = m.drift_deg_per_m.get("p50", 20.0)
    leg = max(0.5, min(2.0, r.at_edge_deg / max(drift, 1.0)))
    return [("approach_m", _round(max(0.3, r.approach_m * 0.6))), ("max_leg_m", _round(leg, 0.1)),
            ("max_leg_m", _round(min(3.0, 1.5 * leg), 0.1))]


def _into_feature_on_turn(r: ScriptedRules, m: BodyMeasures) -> list[tuple[str, float]]:
    """A turn on the spot at the edge slides the body into the feature: crawl or climb at an angle instead,
    or arrive squarer (a shorter last leg)."""
    return [("at_edge_deg", 30.0), ("approach_m", _round(max(0.3, r.approach_m * 0.6)))]


def _rock_on_walk(r: ScriptedRules, m: BodyMeasures) -> list[tuple[str, float]]:
    return [("rock_margin_m", _round(r.rock_margin_m + _shift(m, "p50", 0.15)))]


def _rock_on_turn(r: ScriptedRules, m: BodyMeasures) -> list[tuple[str, float]]:
    """Turns near a rock after a detour slide into it: detour wider, pass wider."""
    return [("detour_margin_m", _round(r.detour_margin_m + _shift(m))),
            ("rock_margin_m", _round(r.rock_margin_m + _shift(m, "p50", 0.15)))]


def _timeout(r: ScriptedRules, m: BodyMeasures) -> list[tuple[str, float]]:
    """Missions that run out of steps mostly re-square again and again: tolerate more before turning."""
    return [("square_deg", _round(r.square_deg * 1.5, 1.0)), ("aim_deg", _round(r.aim_deg * 1.5, 1.0))]


ANSWERS: dict[str, Proposal] = {
    "step-after-walk_forward": _into_feature_on_walk,
    "debris-after-walk_forward": _into_feature_on_walk,
    "step-after-turn": _into_feature_on_turn,
    "debris-after-turn": _into_feature_on_turn,
    "rock-after-walk_forward": _rock_on_walk,
    "rock-after-turn": _rock_on_turn,
    "timeout": _timeout,
}
UNANSWERED: dict[str, str] = {
    "ledge-after-turn": "the body slides off the ledge while turning on it; how far the climb carries the body "
                        "onto the ledge is the skill's, not a planning rule",
    "ledge-after-walk_forward": "walking off the far side of the ledge; the ledge's extent is not in the observation",
    "rock-after-crawl_forward": "crawling has no rock avoidance in the planner; no planning setting changes it",
    "debris-after-crawl_forward": "the crawl stopped inside the debris and stood up; not a planning setting",
    "sat-far": "the scripted planner never sits; another planner's choice",
    "invalid-step": "invalid replies come from the LLM planner; the offline judge writes no format rules",
    "ended": "an end the miner does not classify",
}


def current_rules(prompt: str) -> ScriptedRules:
    """The scripted planner's rules under ``prompt`` (its rules-section settings over the defaults)."""
    return ScriptedRules(**{**asdict(ScriptedRules()), **read_settings(prompt)})


def offline_candidates(report: MiningReport, incumbent: str, max_candidates: int = 8) -> list[Candidate]:
    """Candidate prompts, one rule each, in the order of the most frequent failure mode they answer; a
    setting that answers several modes is one candidate naming them all."""
    r = current_rules(incumbent)
    now = asdict(r)
    answers: dict[tuple[str, float], list[FailureMode]] = {}  # (key, value) -> the modes it answers, in order
    for mode in report.modes:
        answer = ANSWERS.get(mode.id)
        if answer is None:
            continue
        for k, v in answer(r, report.body):
            v = _clip(k, v)
            if not math.isclose(v, now[k]):
                answers.setdefault((k, v), [])
                if mode not in answers[(k, v)]:
                    answers[(k, v)].append(mode)
    out: list[Candidate] = []
    for (k, v), modes in list(answers.items())[:max_candidates]:
        ids = modes[0].id + (f" +{len(modes) - 1}" if len(modes) > 1 else "")  # short: prompts grow 1.5x at most
        rule = Rule(k, v, f"{ids}, {sum(m.missions for m in modes)} of {modes[0].of} missions")
        out.append(Candidate(with_rules(incumbent, [rule]), [rule], "offline", [m.id for m in modes]))
    return out


def merge(a: Candidate, b: Candidate, incumbent: str) -> Candidate | None:
    """One candidate with the rules of both (``None`` when they set the same parameter or are not rule lists)."""
    if not a.rules or not b.rules or {r.key for r in a.rules} & {r.key for r in b.rules}:
        return None
    rules = [*a.rules, *b.rules]
    return Candidate(with_rules(incumbent, rules), rules, a.source, [*a.fixes, *b.fixes])


def unanswered(report: MiningReport) -> list[tuple[FailureMode, str]]:
    """Failure modes no planning rule answers, with the reason."""
    return [(m, UNANSWERED.get(m.id, "no planning rule answers it")) for m in report.modes if m.id not in ANSWERS]
