"""The LLM judge: the failure modes (with evidence) and the incumbent prompt in, a rewritten prompt out.

One request (JSON mode) through :class:`cadenza.llm.client.ChatClient`. The judge sees the miner's
findings (ids, counts, where, what the observation said, in the miner's words) and the body measures,
never the raw logs, and is told the invariants a candidate must keep. Its candidate is checked
against them (:mod:`cadenza.judge.invariants`) and, like every candidate, accepted only by missions.
"""

from __future__ import annotations

import json

from cadenza.judge.mine import MiningReport
from cadenza.judge.propose import Candidate
from cadenza.llm.client import ChatClient, LlmReplyError
from cadenza.mission.rules import HEADING as RULES_HEADING
from cadenza.mission.rules import RULE_PARAMS, read_settings

MAX_MODES = 8


def judge_messages(report: MiningReport, incumbent: str, vocabulary_text: str) -> list[dict[str, str]]:
    findings = {"missions": report.missions, "failures": report.failures,
                "failure_modes": [m.as_dict() for m in report.modes[:MAX_MODES]], "body": report.body.as_dict()}
    settings = "; ".join(f"{k} in [{p.lo:g}, {p.hi:g}]" for k, p in RULE_PARAMS.items())
    system = (
        "You improve the system prompt of a robot mission planner from evidence of failed missions. Reply with one "
        'JSON object: {"failure_modes": [{"id": ID, "diagnosis": TEXT, "rule": TEXT}], "prompt": FULL_NEW_PROMPT}. '
        "Rules for the new prompt: keep every action name the current prompt mentions and every line that says how "
        "to answer, word for word; at most 1.5 times the current length; write in your own words (never copy the "
        f"evidence text); put new rules as bullet lines under a '{RULES_HEADING}' heading, each one sentence, then "
        "optionally one setting in backticks that the offline planner reads (`name = value`, with "
        f"{settings}), then '(fixes ID, N of M missions)' naming the failure mode it answers. Only rules that would "
        "plausibly prevent the failures; no rule for a failure no planning rule can prevent.")
    user = (f"Action vocabulary: {vocabulary_text}\n\nCurrent prompt:\n<<<\n{incumbent}\n>>>\n\n"
            f"Current rule settings: {json.dumps(read_settings(incumbent))}\n\n"
            f"Findings from the runs:\n{json.dumps(findings, indent=1)}")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def llm_candidate(client: ChatClient, report: MiningReport, incumbent: str, vocabulary_text: str) -> Candidate:
    reply = client.complete_json(judge_messages(report, incumbent, vocabulary_text))
    text = reply.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise LlmReplyError('llm judge: the reply has no "prompt" string')
    modes = [str(m.get("id")) for m in reply.get("failure_modes", []) if isinstance(m, dict) and m.get("id")]
    text = text.rstrip("\n") + "\n"
    return Candidate(text, [], "llm", modes)
