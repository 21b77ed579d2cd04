"""Score a residual candidate against the base alone and the current baseline, on the same episodes.

The episodes come from one held-out seed block (``cadenza.governance.seeds``) and are drawn in
sequential looks (``cadenza.governance.sequential``): every policy runs the same new chunk of the
block, the paired checks are recomputed on everything so far, and scoring stops at the first look
that decides DEPLOY or BLOCK, or at ``governance.max_eval_episodes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cadenza.base.loader import BasePolicy
from cadenza.governance.registry import open_registry
from cadenza.governance.scorecard import Check, Scorecard, residual_checks
from cadenza.governance.seeds import HELDOUT_SEED, heldout_seed
from cadenza.governance.sequential import Look, LookPlan, run_looks
from cadenza.governance.stats import paired_table
from cadenza.project.config import Project
from cadenza.residual.evaluate import EvalStats, evaluate, merge
from cadenza.residual.policy import ResidualController, load_policy
from cadenza.tasks.factory import make_task

EVAL_SEED = HELDOUT_SEED  # held-out block 0: train's scorecard (training never resets with it)


def eval_chunk(project: Project, real: bool) -> int:
    return project.config.task.num_envs if real else 500


def checks_for(candidate: EvalStats, base: EvalStats, baseline: EvalStats | None, g: Any,
               confidence: float | None = None) -> list[Check]:
    """The residual checks of ``candidate`` against the base alone (and the baseline), paired over the
    same episodes; ``confidence`` is one look's (default ``g.confidence``)."""
    def tables(ref: EvalStats) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        return paired_table(candidate.success, ref.success), paired_table(ref.collision, candidate.collision)

    c = candidate
    return residual_checks(
        episodes=c.episodes, successes=c.successes, collisions=c.collisions, vs_base=tables(base),
        vs_baseline=tables(baseline) if baseline is not None else None, mean_abs_delta=c.mean_abs_delta,
        clamp_share=c.clamp_share, non_finite=c.non_finite, g=g, confidence=confidence)


def score_on_block(project: Project, policies: dict[str, tuple[str, ResidualController | None]], base: BasePolicy,
                   *, first_seed: int, plan: LookPlan, real: bool = False, baseline_key: str | None = None,
                   on_look: Callable[[Look], None] | None = None) -> tuple[Scorecard, dict[str, EvalStats]]:
    """Score ``policies["candidate"]`` sequentially against ``policies["base"]`` (and ``baseline_key``)
    on the block of seeds starting at ``first_seed``. ``policies`` maps a key to (label, controller;
    None for the base alone)."""
    g = project.config.governance
    level = project.config.task.level
    chunk = eval_chunk(project, real)

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real)

    acc: dict[str, EvalStats | None] = dict.fromkeys(policies)
    next_chunk = [0]

    def draw(start: int, count: int) -> None:
        used = 0
        for key, (label, ctl) in policies.items():
            out = evaluate(mk, base, ctl, episodes=count, seed=first_seed, chunk=chunk, label=label,
                           first_chunk=next_chunk[0])
            acc[key] = merge(acc[key], out)
            used = out.chunks
        next_chunk[0] += used

    def checks_at(conf: float) -> list[Check]:
        c, b = acc["candidate"], acc["base"]
        assert c is not None and b is not None
        return checks_for(c, b, acc[baseline_key] if baseline_key else None, g, conf)

    res = run_looks(plan, draw, checks_at, on_look=on_look)
    runs = {k: v for k, v in acc.items() if v is not None}
    c = runs["candidate"]
    card = Scorecard(kind="residual", task=c.task, episodes=c.episodes,
                     metrics={name: r.as_dict() for name, r in runs.items()}, checks=res.checks,
                     verdict=res.verdict, reasons=res.reasons, confidence=res.looks[-1].confidence,
                     looks=[lk.as_dict() for lk in res.looks], plan=plan.as_dict())
    return card, runs


def score_residual(project: Project, candidate: ResidualController, base: BasePolicy, *, episodes: int | None = None,
                   real: bool = False, candidate_version: str | None = None, block: int = 0,
                   sequential: bool = True, max_episodes: int | None = None,
                   on_look: Callable[[Look], None] | None = None) -> tuple[Scorecard, dict[str, EvalStats]]:
    """The residual scorecard on held-out block ``block``: candidate, base alone and the current
    baseline (when it is another version) on the same episodes, looked at sequentially."""
    g = project.config.governance
    policies: dict[str, tuple[str, ResidualController | None]] = {"candidate": ("residual", candidate),
                                                                   "base": ("base alone", None)}
    reg = open_registry(project)
    bl = reg.baseline("residual")
    if bl is not None and bl != candidate_version:
        actor, _ = load_policy(reg.path("residual", bl, "policy.pt"))
        policies["baseline"] = (f"baseline {bl}", ResidualController(actor, bl))
    plan = LookPlan.from_governance(g, first=episodes, sequential=sequential, cap=max_episodes)
    card, runs = score_on_block(project, policies, base, first_seed=heldout_seed(block), plan=plan, real=real,
                                baseline_key="baseline" if "baseline" in policies else None, on_look=on_look)
    card.block = block
    return card, runs


def apply_verdict(project: Project, card: Scorecard, version: str, promote: bool) -> str:
    """Record the verdict in the ledger and move the residual baseline as it says; returns what was done."""
    return open_registry(project).apply_verdict("residual", version, card, promote,
                                                no_baseline="no baseline (base alone)")
