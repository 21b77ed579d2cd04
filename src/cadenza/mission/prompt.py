"""Rendering ``vla_finetune.prompt_template``: the prompt a planner sees and the fine-tuning export uses.

The template is a Python format string over a fixed set of named fields (:data:`FIELDS`). Only plain
names are allowed (no attribute or index access); ``{{`` and ``}}`` are literal braces. An unknown
field is an error that lists the available ones.
"""

from __future__ import annotations

import json
import string
from typing import Any

from cadenza.errors import CadenzaError

# field -> what it holds (documented in docs/runlog.md)
FIELDS: dict[str, str] = {
    "system_prompt": "the project's SYSTEM_PROMPT.md as the run used it",
    "goal": "the mission goal text",
    "observation": "the observation summary as one line of text",
    "observation_json": "the observation summary as compact JSON",
    "actions": "the action vocabulary with parameter ranges, e.g. 'walk_forward distance_m=[0.1, 3]; ...'",
    "history": "the action steps taken so far in this mission, comma separated ('none' at the start)",
    "step": "the 1-based index of the decision being asked for",
    "project": "the project name",
}
TEMPLATE_KEY = "vla_finetune.prompt_template"


class TemplateError(CadenzaError):
    exit_code = 2


def template_fields(template: str, where: str = TEMPLATE_KEY) -> list[str]:
    """The field names ``template`` uses; raises :class:`TemplateError` on unknown or malformed fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TemplateError(f"{where}: malformed template ({e}); write a literal brace as {{{{ or }}}}") from None
    available = ", ".join("{" + f + "}" for f in FIELDS)
    used: list[str] = []
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise TemplateError(f"{where}: positional field {{{name}}} is not allowed; use a named field: {available}")
        if name not in FIELDS:
            raise TemplateError(f"{where}: unknown field {{{name}}}; available: {available}")
        if spec and ("{" in spec):
            raise TemplateError(f"{where}: nested fields in {{{name}:{spec}}} are not allowed")
        used.append(name)
    return used


def history_text(history: list[str]) -> str:
    return ", ".join(history) if history else "none"


def prompt_fields(*, system_prompt: str, goal: str, observation: dict[str, Any], observation_text: str,
                  actions_text: str, history: str, step: int, project: str) -> dict[str, Any]:
    return {
        "system_prompt": system_prompt.strip(),
        "goal": goal,
        "observation": observation_text,
        "observation_json": json.dumps(observation, separators=(",", ":"), sort_keys=True),
        "actions": actions_text,
        "history": history,
        "step": step,
        "project": project,
    }


def render(template: str, fields: dict[str, Any], where: str = TEMPLATE_KEY) -> str:
    template_fields(template, where)
    try:
        return template.format_map(fields)
    except (ValueError, TypeError) as e:  # e.g. a format spec that does not fit the value
        raise TemplateError(f"{where}: cannot render the template: {e}") from None
