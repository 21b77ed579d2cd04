"""``env run --policy llm``: the rendered prompt in, one action step out, as JSON checked against the vocabulary.

Each decision sends two messages: a system message that fixes the reply format (one JSON object,
``{"action": NAME, "params": {PARAM: NUMBER}}``, and the vocabulary with its ranges) and the rendered
``vla_finetune.prompt_template`` (which carries ``SYSTEM_PROMPT.md`` through ``{system_prompt}``). A
reply that is not JSON, names an unknown action or lacks a parameter gets **one** repair request that
quotes the error; if the repaired reply is invalid too, the planner stops the mission safely
(:class:`~cadenza.mission.objectives.PlannerStop`: the mission ends in a logged ``safe_stop`` step, without
success, the body standing where it is). Out-of-range numbers are not errors: the runner clamps them and
logs what it changed.

Every request, cache hit, repair and fallback is counted (:attr:`LlmPlanner.counts`) and reported per
decision (:meth:`LlmPlanner.step_record`) for the run log. Transport errors (401/403, a timeout after
the retries, a spent budget) stop the run with one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.llm.cache import ReplyCache
from cadenza.llm.client import ChatClient, LlmReplyError, Messages, parse_json_object
from cadenza.llm.settings import LlmSettings
from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.objectives import PlannerStop
from cadenza.mission.planners import PlannerInput, register_planner
from cadenza.project.config import Project


def format_instruction(vocab: Vocabulary) -> str:
    """The system message: the reply format and the vocabulary (owned by cadenza, not by the prompt)."""
    example = json.dumps({"action": "walk_forward", "params": {"distance_m": 1.0}})
    return ("You choose the next action step of a robot mission. Reply with exactly one JSON object and "
            f'nothing else, of the form {{"action": NAME, "params": {{PARAM: NUMBER}}}}, e.g. {example}. '
            f"Actions and their parameter ranges: {vocab.text()}.")


def step_from_reply(obj: dict[str, Any], vocab: Vocabulary, raw: str) -> ActionStep:
    """The action step a JSON reply names, checked against ``vocab``; :class:`ActionError` says what is wrong."""
    name = obj.get("action")
    if not isinstance(name, str) or not name.strip():
        raise ActionError('the reply has no "action" string')
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ActionError(f'"params" must be an object, got {type(params).__name__}')
    step = vocab.parse(name) if (not params and " " in name.strip()) else ActionStep(name.strip(), dict(params))
    vocab.check(step)  # raises on an unknown action or a missing / non-numeric parameter
    return ActionStep(step.name, {p: float(v) for p, v in step.params.items()}, raw)  # the runner clamps


@dataclass
class PlannerCounts:
    decisions: int = 0
    requests: int = 0  # model replies asked for (a repair is one more)
    repairs: int = 0
    fallbacks: int = 0
    invalid_replies: int = 0
    errors: list[str] = field(default_factory=list)  # the last few reasons a reply was invalid

    def as_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "requests": self.requests, "repairs": self.repairs,
                "fallbacks": self.fallbacks, "invalid_replies": self.invalid_replies}


class LlmPlanner:
    name = "llm"

    def __init__(self, vocabulary: Vocabulary, client: ChatClient) -> None:
        self.vocab = vocabulary
        self.client = client
        self.system = format_instruction(vocabulary)
        self.counts = PlannerCounts()
        self._last: dict[str, Any] = {}

    def reset(self, goal: str, seed: int) -> None:
        self._last = {}

    def _ask(self, messages: Messages) -> tuple[str, ActionStep | None, str | None]:
        hits = self.client.counts.cache_hits
        text = self.client.complete(messages)
        self.counts.requests += 1
        self._last["cached"] = self._last.get("cached", 0) + (self.client.counts.cache_hits - hits)
        try:
            return text, step_from_reply(parse_json_object(text), self.vocab, text), None
        except (LlmReplyError, ActionError) as e:
            self.counts.invalid_replies += 1
            return text, None, str(e).removeprefix("llm: ")

    def plan(self, inp: PlannerInput) -> ActionStep:
        self.counts.decisions += 1
        self._last = {"requests": 0, "cached": 0, "repair": False, "fallback": False, "errors": []}
        messages: Messages = [{"role": "system", "content": self.system}, {"role": "user", "content": inp.prompt}]
        text, step, error = self._ask(messages)
        self._last["requests"] += 1
        if step is not None:
            return step
        self._last["errors"].append(error)
        self.counts.repairs += 1
        self._last["repair"] = True
        repair = (f"Your reply is invalid: {error}. Reply again with exactly one JSON object "
                  f'{{"action": NAME, "params": {{PARAM: NUMBER}}}} using one of: {self.vocab.text()}.')
        text, step, error = self._ask([*messages, {"role": "assistant", "content": text},
                                       {"role": "user", "content": repair}])
        self._last["requests"] += 1
        if step is not None:
            return step
        self._last["errors"].append(error)
        self.counts.fallbacks += 1
        self._last["fallback"] = True
        self.counts.errors = [*self.counts.errors, str(error)][-5:]
        raise PlannerStop(f"the model's reply was invalid after one repair ({error})")

    def step_record(self) -> dict[str, Any]:
        """What the last decision cost: requests, cache hits, repair, fallback, the errors quoted (never the key)."""
        return dict(self._last)

    def totals(self) -> dict[str, Any]:
        return {**self.counts.as_dict(), "client": self.client.counts.as_dict(), "model": self.client.settings.model,
                "base_url": self.client.settings.base_url}


def make_llm_planner(project: Project, vocabulary: Vocabulary, *, settings: LlmSettings | None = None,
                     use_cache: bool = True, budget: int | None = None) -> LlmPlanner:
    """The llm planner for ``project`` (``[llm]`` settings unless given), with the project's reply cache."""
    if "{system_prompt}" not in project.config.vla_finetune.prompt_template:
        raise CadenzaError(f"{project.root / 'cadenza.toml'}: key 'vla_finetune.prompt_template': the llm planner "
                           "sends the rendered template as its prompt, so it must contain {system_prompt}")
    settings = settings or LlmSettings.from_project(project)
    cache = ReplyCache.for_project(project.root) if use_cache else None
    return LlmPlanner(vocabulary, ChatClient(settings, cache, budget))


def register() -> None:
    """Make ``--policy llm`` build this planner with the project's ``[llm]`` settings."""
    register_planner("llm", lambda project, vocabulary: make_llm_planner(project, vocabulary))


register()
