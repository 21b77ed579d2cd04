"""Sequential scoring: look at the evidence in batches until every check is decided (pure logic).

In simulation more evidence is cheap, so a scorecard whose interval straddles a threshold does not
stop at NEEDS_DATA: it draws the next batch of fresh held-out episodes and looks again, up to
``governance.max_eval_episodes``. Looking repeatedly at a growing sample and stopping at the first
look that decides would inflate the error rate of a fixed-sample interval, so each look gets only
part of the error budget:

* **alpha spending over a bounded number of looks.** The looks are fixed in advance (``first``
  episodes, then ``batch`` more at a time, up to ``cap``). Look ``j`` at ``n_j`` episodes spends
  ``alpha_j = alpha * (n_j - n_{j-1}) / cap`` (a linear spending function: every episode buys the
  same share of the budget), and every interval at that look is computed at confidence
  ``1 - alpha_j``. The spends add up to ``alpha = 1 - governance.confidence``.
* **why this is valid:** a wrong decision over the whole sequence needs a wrong interval at some
  look; by the union bound its probability is at most ``sum_j alpha_j = alpha``, whatever the
  dependence between looks (they share episodes). One-sided, a false DEPLOY when the true rate sits
  exactly on a threshold happens with probability at most ``alpha / 2``. The bound is conservative
  (group-sequential boundaries computed from the joint distribution would be a little narrower) but
  needs no distributional assumption, holds for every check type (Wilson rates and paired
  differences alike) and is simple to audit.
* with ``cap == first`` there is one look at confidence ``1 - alpha``: the fixed-sample scorecard.

A look *decides* when its verdict is DEPLOY or BLOCK (:func:`cadenza.governance.scorecard.decide`);
NEEDS_DATA is returned only when the cap is reached with a check still undecided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cadenza.governance.scorecard import Check, Verdict, decide

MAX_LOOKS = 10  # a scorecard looks at most this many times (each look spends its share of alpha)


@dataclass(frozen=True)
class LookPlan:
    """When a scorecard looks (cumulative episodes) and at what confidence."""

    first: int  # episodes at the first look
    batch: int  # episodes added per later look
    cap: int  # most episodes a scorecard may use
    confidence: float = 0.95  # overall two-sided confidence over all looks

    def __post_init__(self) -> None:
        if self.first < 1 or self.batch < 1 or self.cap < 1:
            raise ValueError(f"look plan needs positive sizes, got first={self.first}, batch={self.batch}, "
                             f"cap={self.cap}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    @classmethod
    def from_governance(cls, g: Any, first: int | None = None, sequential: bool = True,
                        cap: int | None = None) -> LookPlan:
        """The plan of a ``[governance]`` section: a first look at ``first`` (default ``eval_episodes``)
        episodes, then batches of the same size up to ``cap`` (default ``max_eval_episodes``), at most
        :data:`MAX_LOOKS` looks (larger batches when the cap is far); a single look when
        ``sequential`` is off or the first look already reaches the cap."""
        n = int(first or g.eval_episodes)
        top = max(n, int(cap or g.max_eval_episodes)) if sequential else n
        batch = max(n, -(-(top - n) // (MAX_LOOKS - 1))) if top > n else n
        return cls(first=n, batch=batch, cap=top, confidence=float(g.confidence))

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def sizes(self) -> list[int]:
        """Cumulative episodes at each look; the last one is ``cap``."""
        out = [min(self.first, self.cap)]
        while out[-1] < self.cap:
            out.append(min(out[-1] + self.batch, self.cap))
        return out

    def look_confidence(self, j: int) -> float:
        """Two-sided confidence of every interval at look ``j`` (0-based)."""
        sizes = self.sizes()
        prev = sizes[j - 1] if j > 0 else 0
        return 1.0 - self.alpha * (sizes[j] - prev) / self.cap

    def as_dict(self) -> dict[str, Any]:
        return {"first": self.first, "batch": self.batch, "cap": self.cap, "confidence": self.confidence,
                "sizes": self.sizes(), "look_confidence": [self.look_confidence(j) for j in range(len(self.sizes()))],
                "rule": "alpha spending, linear in episodes, Bonferroni over looks"}


@dataclass
class Look:
    episodes: int
    confidence: float
    verdict: Verdict
    undecided: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "confidence": self.confidence, "verdict": self.verdict,
                "undecided": self.undecided}

    def line(self) -> str:
        """One progress line: ``look at 1000 episodes (99.17% intervals): NEEDS_DATA, undecided: success``."""
        return (f"look at {self.episodes} episodes ({self.confidence:.2%} intervals): {self.verdict}"
                + (f", undecided: {', '.join(self.undecided)}" if self.undecided else ""))


@dataclass
class SequentialResult:
    verdict: Verdict
    reasons: list[str]
    checks: list[Check]
    looks: list[Look]
    capped: bool  # the cap was reached with a check undecided

    @property
    def episodes(self) -> int:
        return self.looks[-1].episodes


def run_looks(plan: LookPlan, draw: Callable[[int, int], None], checks_at: Callable[[float], list[Check]],
              on_look: Callable[[Look], None] | None = None) -> SequentialResult:
    """Score sequentially: ``draw(start, count)`` adds episodes ``start .. start + count - 1`` to the
    caller's evidence; ``checks_at(confidence)`` builds the checks from all evidence so far. Stops at
    the first look whose verdict is DEPLOY or BLOCK, or at the cap."""
    looks: list[Look] = []
    n = 0
    sizes = plan.sizes()
    verdict: Verdict = "NEEDS_DATA"
    reasons: list[str] = []
    checks: list[Check] = []
    for j, target in enumerate(sizes):
        draw(n, target - n)
        n = target
        conf = plan.look_confidence(j)
        checks = checks_at(conf)
        verdict, reasons = decide(checks)
        look = Look(n, conf, verdict, [c.name for c in checks if c.status == "UNDECIDED"])
        looks.append(look)
        if on_look is not None:
            on_look(look)
        if verdict != "NEEDS_DATA":
            break
    return SequentialResult(verdict, reasons, checks, looks, capped=verdict == "NEEDS_DATA")
