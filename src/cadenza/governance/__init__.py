"""Governance: statistics, scorecards and verdicts, the governor, the artefact registry.

Nothing here imports training code: it judges numbers and moves files.
"""

from cadenza.governance.scorecard import Check, Scorecard, decide

__all__ = ["Check", "Scorecard", "decide"]
