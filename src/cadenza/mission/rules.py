"""The rules section of ``SYSTEM_PROMPT.md``: plain sentences for the LLM, parameters for the scripted planner.

Format (documented in ``docs/prompt-train.md``)::

    ## Rules

    - Stop 0.45 m short of debris or a step face, then square up. `standoff_m = 0.45` (fixes ...)

where ``(fixes ...)`` is e.g. ``(fixes step-after-walk_forward, 11 of 60 missions)``.

The section starts at a Markdown heading whose text is ``Rules`` (any level, any case) and runs to the
next heading of the same or a higher level. Each rule is one bullet line (``-`` or ``*``): a sentence,
then a ``name = value`` setting in backticks, then ``(fixes ...)`` naming the failure mode it answers.
The scripted planner reads the settings whose names it knows (:data:`RULE_PARAMS`, each with the range it
accepts) and ignores everything else; a value outside its range is clamped into it. The LLM reads the
sentences. One prompt, two readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cadenza.errors import CadenzaError

HEADING = "## Rules"


@dataclass(frozen=True)
class RuleParam:
    lo: float
    hi: float
    sentence: str  # format string over {v}


# the scripted planner's parameters a rule may set (cadenza.mission.planners.ScriptedRules has each of them)
RULE_PARAMS: dict[str, RuleParam] = {
    "standoff_m": RuleParam(0.1, 0.6, "Stop {v:g} m short of debris or a step face, then square up"),
    "approach_m": RuleParam(0.3, 3.0, "On long approaches, stop {v:g} m short and square up again"),
    "max_leg_m": RuleParam(0.3, 3.0, "Walk at most {v:g} m per step; square up in between"),
    "crawl_from_m": RuleParam(0.2, 1.5, "Start crawling when the debris edge is {v:g} m away or closer"),
    "climb_from_m": RuleParam(0.2, 0.6, "Climb when the step face is {v:g} m away or closer"),
    "square_deg": RuleParam(2.0, 45.0, "Away from features, square up when over {v:.0f} deg off"),
    "at_edge_deg": RuleParam(5.0, 30.0, "At an edge, crawl or climb when within {v:.0f} deg of square"),
    "aim_deg": RuleParam(2.0, 45.0, "Turn to the victim when over {v:.0f} deg off"),
    "rock_margin_m": RuleParam(0.0, 1.0, "Walk past rocks with {v:g} m to spare"),
    "detour_margin_m": RuleParam(0.0, 1.0, "Detour round rocks with {v:g} m to spare"),
}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETTING = re.compile(r"`\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(-?\d+(?:\.\d+)?)\s*`")
_BULLET = re.compile(r"^\s*[-*]\s+")


class RulesError(CadenzaError):
    exit_code = 2


@dataclass(frozen=True)
class Rule:
    key: str
    value: float
    fixes: str = ""  # the failure it answers: "<mode id>, N of M missions"

    def line(self) -> str:
        p = RULE_PARAMS[self.key]
        fixes = f" (fixes {self.fixes})" if self.fixes else ""
        return f"- {p.sentence.format(v=self.value)}. `{self.key} = {_num(self.value)}`{fixes}"


def _num(v: float) -> str:
    return f"{v:g}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def section_span(text: str) -> tuple[int, int] | None:
    """Line indices ``[start, end)`` of the rules section (heading included), or ``None``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if m and m.group(2).strip().lower() == "rules":
            level = len(m.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if (h := _HEADING.match(lines[j])) and len(h.group(1)) <= level), len(lines))
            return i, end
    return None


def rule_lines(text: str) -> list[str]:
    span = section_span(text)
    if span is None:
        return []
    return [ln for ln in text.splitlines()[span[0] + 1:span[1]] if _BULLET.match(ln)]


def read_settings(text: str) -> dict[str, float]:
    """The known ``name = value`` settings of the rules section, clamped into range (later lines win)."""
    out: dict[str, float] = {}
    for line in rule_lines(text):
        for key, val in _SETTING.findall(line):
            if key in RULE_PARAMS:
                p = RULE_PARAMS[key]
                out[key] = min(max(float(val), p.lo), p.hi)
    return out


def unknown_settings(text: str) -> list[str]:
    return [key for line in rule_lines(text) for key, _ in _SETTING.findall(line) if key not in RULE_PARAMS]


def with_rules(text: str, rules: list[Rule]) -> str:
    """``text`` with ``rules`` in its rules section: a rule replaces an existing line setting the same name;
    other lines stay as they are; the section is appended when there is none."""
    lines = text.rstrip("\n").splitlines()
    span = section_span(text)
    if span is None:
        body: list[str] = []
        lines += ["", HEADING, ""]
        start = end = len(lines)
    else:
        start, end = span[0] + 1, span[1]
        body = lines[start:end]
    for rule in rules:
        new = rule.line()
        hit = next((i for i, ln in enumerate(body) if _BULLET.match(ln) and rule.key in dict(_SETTING.findall(ln))),
                   None)
        if hit is None:
            last = max((i for i, ln in enumerate(body) if ln.strip()), default=-1)
            body.insert(last + 1, new)
        else:
            body[hit] = new
    if span is None:
        return "\n".join(lines[:start] + body) + "\n"
    if body and body[-1].strip() and end < len(lines):
        body.append("")
    return "\n".join(lines[:start] + body + lines[end:]) + "\n"
