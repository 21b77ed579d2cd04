"""The round loop every governed trainer shares: ``env residual train`` and the bench's own arms.

SB3's split: the loop lives here once; what a round does (collect a rollout, update) lives in the
algorithm's module (:class:`cadenza.residual.ppo.PPO`, anything with ``round() -> stats``). Each round:

1. the curriculum level for the env steps done so far (``plan.level_at``) is set on the task;
2. ``algorithm.round()`` collects and updates; its stats become the round's history row
   (``round``, ``level``, ``env_steps_total`` and the stats' fields);
3. ``on_row(row)`` lets the caller add to the row before the governor sees it (train: wall time,
   the collision cost, the validation card);
4. the governor reviews the history and says continue or stop;
5. ``after_review(row, decision)`` runs outside the ``clock`` (train: checkpoint and progress; the
   bench: its periodic evaluation), and the loop ends when the governor said stop.

Steps 1-4 run inside ``clock`` when one is given (the bench times training apart from its evaluations).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from cadenza.governance.governor import Decision, Governor, Plan


class RoundStatsLike(Protocol):
    env_steps: int

    def as_dict(self) -> dict[str, Any]: ...


class RoundAlgorithm(Protocol):
    def round(self) -> RoundStatsLike:
        """Collect one rollout and update on it; returns the round's statistics."""
        ...


class LeveledTask(Protocol):
    def set_level(self, level: float) -> None: ...


Row = dict[str, Any]


def run_rounds(algorithm: RoundAlgorithm, task: LeveledTask, plan: Plan, governor: Governor, history: list[Row], *,
               steps_done: int = 0, on_row: Callable[[Row], None] | None = None,
               after_review: Callable[[Row, Decision], None] | None = None,
               clock: AbstractContextManager[Any] | None = None) -> tuple[int, Decision]:
    """Run rounds until the governor says stop; ``history`` grows by one row per round (it may hold the rows
    of a resumed run). Returns the env steps done in all and the governor's stopping decision."""
    while True:
        with clock if clock is not None else nullcontext():
            level = plan.level_at(steps_done)
            task.set_level(level)
            stats = algorithm.round()
            steps_done += stats.env_steps
            row: Row = {"round": len(history), "level": level, "env_steps_total": steps_done, **stats.as_dict()}
            history.append(row)
            if on_row is not None:
                on_row(row)
            decision = governor.review(history, plan)
        if after_review is not None:
            after_review(row, decision)
        if decision.action == "stop":
            return steps_done, decision
