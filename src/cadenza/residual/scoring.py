"""Score a residual candidate against the base alone and the current baseline, on the same episodes."""

from __future__ import annotations

from typing import Any

from cadenza.base.loader import BasePolicy
from cadenza.governance.registry import Registry
from cadenza.governance.scorecard import Scorecard, decide, residual_checks
from cadenza.project.config import Project
from cadenza.residual.evaluate import EvalStats, evaluate
from cadenza.residual.policy import ResidualController, load_policy
from cadenza.tasks.factory import make_task

EVAL_SEED = 1_000_003  # held out: training never resets with this seed


def eval_chunk(project: Project, real: bool) -> int:
    return project.config.task.num_envs if real else 500


def score_residual(project: Project, candidate: ResidualController, base: BasePolicy, *, episodes: int,
                   real: bool = False, candidate_version: str | None = None) -> tuple[Scorecard, dict[str, EvalStats]]:
    g = project.config.governance
    level = project.config.task.level

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real)

    chunk = eval_chunk(project, real)
    runs = {
        "candidate": evaluate(mk, base, candidate, episodes=episodes, seed=EVAL_SEED, chunk=chunk, label="residual"),
        "base": evaluate(mk, base, None, episodes=episodes, seed=EVAL_SEED, chunk=chunk, label="base alone"),
    }
    reg = Registry(project.root)
    bl = reg.baseline("residual")
    if bl is not None and bl != candidate_version:
        actor, _ = load_policy(reg.path("residual", bl, "policy.pt"))
        runs["baseline"] = evaluate(mk, base, ResidualController(actor, bl), episodes=episodes, seed=EVAL_SEED,
                                    chunk=chunk, label=f"baseline {bl}")
    c = runs["candidate"]
    checks = residual_checks(
        episodes=c.episodes, successes=c.successes, collisions=c.collisions, base=runs["base"].counts(),
        baseline=runs["baseline"].counts() if "baseline" in runs else None, mean_abs_delta=c.mean_abs_delta,
        clamp_share=c.clamp_share, non_finite=c.non_finite, g=g,
    )
    verdict, reasons = decide(checks)
    metrics = {name: r.as_dict() for name, r in runs.items()}
    card = Scorecard(kind="residual", task=c.task, episodes=c.episodes, metrics=metrics, checks=checks,
                     verdict=verdict, reasons=reasons)
    return card, runs


def apply_verdict(project: Project, card: Scorecard, version: str, promote: bool) -> str:
    """Record the verdict in the ledger and move the residual baseline as it says; returns what was done."""
    return Registry(project.root).apply_verdict("residual", version, card, promote,
                                                no_baseline="no baseline (base alone)")
