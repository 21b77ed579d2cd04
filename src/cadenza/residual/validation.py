"""The validation card: what the governor reads during training to keep the best round and to stop.

Each validation runs the deterministic residual on the same ``episodes`` of the *validation block*
(``cadenza.governance.seeds.VALIDATION_SEED``, disjoint from every held-out block) and builds the
same checks as the final scorecard, at ``governance.confidence``, against the base alone on those
episodes (run once per training). Its **margin** is how far the worst gate is cleared:

    margin = min(success_low - success_threshold, max_collision_rate - collision_high)

(Wilson bounds; negative when a gate is missed). The trainer keeps the round with the highest margin
and the governor stops once a card passes every check with ``margin >= governance.stop_margin``.

Every card looks at the same episodes, so over tens of cards the best one reads high by luck (the
winner's curse: a 256-episode card that read 90.6% scored 86.0% on 3,000 fresh episodes). A card
that would stop training is therefore **confirmed** on as many other episodes of the validation
block, used by no card (``Validator.score(confirm=True)``); the round's card then counts with the
smaller of the two margins, and passes only if both do.

The cards are not free: each runs its episodes on the task, outside the training budget. The validator
counts every env step it spends and their wall time (``Validator.env_steps``, ``Validator.wall_s``: the cards,
their confirmations and the base's run), and ``train`` reports both beside the training's (docs/governance.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cadenza.base.loader import BasePolicy
from cadenza.governance.scorecard import decide
from cadenza.governance.seeds import VALIDATION_SEED
from cadenza.governance.stats import wilson
from cadenza.project.config import Project
from cadenza.residual.evaluate import EvalStats, evaluate
from cadenza.residual.policy import ResidualController
from cadenza.residual.scoring import checks_for, eval_chunk
from cadenza.tasks.factory import make_task


@dataclass
class ValidationCard:
    episodes: int
    success: float
    collision: float
    margin: float
    passes: bool  # every check passes (the card would DEPLOY)
    failing: list[str]
    env_steps: int = 0  # the env steps its episodes took

    def as_dict(self) -> dict[str, Any]:
        return {"val_episodes": self.episodes, "val_success": self.success, "val_collision": self.collision,
                "val_margin": self.margin, "val_passes": self.passes, "val_failing": self.failing,
                "val_env_steps": self.env_steps}


def card_margin(successes: int, collisions: int, n: int, g: Any) -> float:
    """How far the worst of the two rate gates is cleared (Wilson bounds at ``g.confidence``)."""
    s_lo, _ = wilson(successes, n, g.confidence)
    _, c_hi = wilson(collisions, n, g.confidence)
    return min(s_lo - g.success_threshold, g.max_collision_rate - c_hi)


class Validator:
    """Scores training checkpoints on the validation block (the base alone is run once, lazily)."""

    def __init__(self, project: Project, base: BasePolicy, *, episodes: int, real: bool = False) -> None:
        self.project, self.base, self.episodes, self.real = project, base, episodes, real
        self.chunk = eval_chunk(project, real)
        self._base_stats: EvalStats | None = None
        self.env_steps = 0  # env steps of every episode this validator ran (cards, confirmations, the base's)
        self.wall_s = 0.0  # and the wall time they took

    def _mk(self, n: int) -> Any:
        return make_task(self.project, num_envs=n, level=self.project.config.task.level, real=self.real)

    def _run(self, controller: ResidualController | None, label: str, first_chunk: int = 0) -> EvalStats:
        t0 = time.perf_counter()
        stats = evaluate(self._mk, self.base, controller, episodes=self.episodes, seed=VALIDATION_SEED,
                         chunk=self.chunk, label=label, first_chunk=first_chunk)
        self.env_steps += stats.env_steps
        self.wall_s += time.perf_counter() - t0
        return stats

    @property
    def base_stats(self) -> EvalStats:
        if self._base_stats is None:
            self._base_stats = self._run(None, "base alone")
        return self._base_stats

    def score(self, controller: ResidualController, *, confirm: bool = False) -> ValidationCard:
        """The card on the validation block's episodes; ``confirm``: on as many other episodes of the block, never
        used by a card (the confirmation a passing card needs before training stops)."""
        g = self.project.config.governance
        c = self._run(controller, "residual", first_chunk=-(-self.episodes // self.chunk) if confirm else 0)
        checks = checks_for(c, self.base_stats, None, g)
        verdict, _ = decide(checks)
        return ValidationCard(episodes=c.episodes, success=c.success_rate, collision=c.collision_rate,
                              margin=card_margin(c.successes, c.collisions, c.episodes, g),
                              passes=verdict == "DEPLOY",
                              failing=[ch.name for ch in checks if ch.status in ("FAIL", "UNDECIDED")],
                              env_steps=c.env_steps)


def confirmed(card: ValidationCard, again: ValidationCard) -> ValidationCard:
    """What a card that would stop training counts as once confirmed on other episodes: the worse of the two
    (the smaller margin), passing only if both pass; its env steps are both cards'."""
    worse = card if card.margin <= again.margin else again
    return ValidationCard(episodes=worse.episodes, success=worse.success, collision=worse.collision,
                          margin=worse.margin, passes=card.passes and again.passes,
                          failing=sorted(set(card.failing) | set(again.failing)),
                          env_steps=card.env_steps + again.env_steps)
