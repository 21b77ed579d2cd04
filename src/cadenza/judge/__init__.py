"""Prompt training (``cadenza env train``): mine the run logs for failures, propose a rewritten prompt,
accept it only when missions say it is better.

* :mod:`cadenza.judge.runs`: the cached runs (``.cadenza-env/*.log.jsonl``) as missions and steps.
* :mod:`cadenza.judge.mine`: the offline failure miner (failure modes with evidence and counts).
* :mod:`cadenza.mission.rules` (below the judge): the prompt's rules section, the format both planners read.
* :mod:`cadenza.judge.propose`: the local (offline) judge: failure modes -> rules.
* :mod:`cadenza.judge.llm_judge`: the LLM judge: failure modes and the prompt -> a rewritten prompt.
* :mod:`cadenza.judge.invariants`: what every candidate prompt must keep.
"""
