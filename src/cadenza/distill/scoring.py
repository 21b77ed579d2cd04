"""The student scorecard: gap to the teacher, success, safety, latency, export parity, regression.

The student and its teacher (and the current student baseline) run the *same* held-out episodes,
so they are compared episode by episode: the gap ``teacher - student`` success gets a paired
interval (Newcombe's method 10 for paired proportions, built on Wilson intervals), which is much
narrower than an unpaired one when the two mostly succeed and fail on the same episodes.

The paired checks live in ``cadenza.governance.scorecard``; here ``student_checks`` (pure), then the I/O that
runs it in sequential looks on a held-out block.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from cadenza.governance.registry import open_registry
from cadenza.governance.scorecard import (
    Check,
    Scorecard,
    _safety,
    enough_episodes,
    gap_check,
    not_worse_paired,
    rate_at_least,
    rate_at_most,
)
from cadenza.governance.stats import paired_table
from cadenza.project.config import Project

EXPORT_PARITY_TOL = 1e-5  # fp32 export vs the torch student, max |action difference|


# ---------------------------------------------------------------------------------------------- checks
@dataclass
class StudentEvidence:
    """Everything the student checks read (measured by :func:`score_student` or built by hand in tests)."""

    episodes: int
    successes: int
    collisions: int
    gaps: dict[str, tuple[int, int, int, int]]  # precision -> paired (both, teacher only, student only, neither)
    non_finite: int
    out_of_bounds: int
    latency_p99_ms: float
    latency_p50_ms: float
    fp32_parity: float
    baseline: tuple[int, int, int, int] | None = None  # paired (both, candidate only, baseline only, neither)
    teacher_note: str | None = None  # e.g. the teacher is no longer the promoted residual


def student_checks(ev: StudentEvidence, g: Any, confidence: float | None = None) -> list[Check]:
    """The checks of a student candidate; ``g`` is the ``[governance]`` section; ``confidence``
    overrides ``g.confidence`` (one sequential look's)."""
    c = g.confidence if confidence is None else confidence
    checks = [
        enough_episodes(ev.episodes, g.min_episodes),
        rate_at_least("success", ev.successes, ev.episodes, g.success_threshold, c),
        _safety(rate_at_most("collision (safety)", ev.collisions, ev.episodes, g.max_collision_rate, c)),
    ]
    for precision, table in ev.gaps.items():
        checks.append(gap_check(f"gap to teacher ({precision})", table, g.max_student_gap, c))
    if ev.baseline is not None:
        checks.append(not_worse_paired("regression vs current student", ev.baseline, g.regression_margin, c))
    budget = g.latency_budget_ms
    headroom = budget / ev.latency_p99_ms if ev.latency_p99_ms > 0 else math.inf
    lat_txt = (f"p50 {1000 * ev.latency_p50_ms:.1f} us, p99 {1000 * ev.latency_p99_ms:.1f} us per observation vs "
               f"budget {budget:g} ms")
    checks.append(Check("latency budget (safety)", "PASS" if ev.latency_p99_ms <= budget else "FAIL",
                        lat_txt + (f": MEETS it ({headroom:,.0f}x headroom at p99)" if ev.latency_p99_ms <= budget
                                   else ": MISSES it"), safety=True))
    checks.append(Check("finite, bounded actions (safety)",
                        "FAIL" if ev.non_finite or ev.out_of_bounds else "PASS",
                        f"{ev.non_finite} non-finite and {ev.out_of_bounds} out-of-bounds action components", safety=True))
    checks.append(Check("export parity (safety)", "PASS" if ev.fp32_parity <= EXPORT_PARITY_TOL else "FAIL",
                        f"fp32 ONNX vs torch student: max |action difference| {ev.fp32_parity:.2e} "
                        f"(tolerance {EXPORT_PARITY_TOL:.0e})", safety=True))
    if ev.teacher_note:
        checks.append(Check("teacher", "WARN", ev.teacher_note))
    return checks


# ---------------------------------------------------------------------------------------------- I/O
@dataclass
class StudentScore:
    card: Scorecard
    evidence: StudentEvidence
    latency: dict[str, dict[str, float]]
    parity: dict[str, float]
    teacher: dict[str, Any]
    wall_s: float


def score_student(project: Project, version: str, *, episodes: int | None = None, real: bool = False,
                  block: int = 0, sequential: bool = True, max_episodes: int | None = None,
                  on_look: Any = None) -> StudentScore:
    """Score a registered student against its teacher (and the current student baseline) on the same
    episodes of held-out block ``block``, in sequential looks (``cadenza.governance.sequential``) up to
    ``max_episodes`` (default ``governance.max_student_eval_episodes``);
    measure its latency and re-check its fp32 export's parity."""
    from cadenza.distill.dagger import load_teacher
    from cadenza.distill.evaluate import Outcomes, run_episodes
    from cadenza.distill.export import load_weights, parity
    from cadenza.distill.runtime import (
        FP32_NAME,
        INT8_NAME,
        WEIGHTS_NAME,
        latency_in_fresh_process,
        load_registered_student,
    )
    from cadenza.governance.seeds import heldout_seed
    from cadenza.governance.sequential import LookPlan, run_looks
    from cadenza.residual.scoring import eval_chunk
    from cadenza.tasks.factory import make_task

    t0 = time.perf_counter()
    g = project.config.governance
    reg = open_registry(project)
    man = reg.verify("student", version)
    meta = man.get("metadata", {})
    if bool(meta.get("real", False)) != real:
        where = "the real simulator" if meta.get("real") else "the proxy"
        from cadenza.errors import ArtefactError

        raise ArtefactError(f"student {version} was distilled on {where}; score it {'with' if meta.get('real') else 'without'} --real")
    torch_student = load_weights(reg.path("student", version, WEIGHTS_NAME))
    arch = torch_student.arch
    tdesc = meta.get("teacher", {})
    teacher = load_teacher(project, kind=tdesc.get("kind", "residual"), residual_version=tdesc.get("residual_version"),
                           real=real, obs_dim=arch.obs_dim, act_dim=arch.act_dim)
    level = project.config.task.level
    chunk = eval_chunk(project, real)
    first_seed = heldout_seed(block)

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real)

    precisions = ["fp32"] + (["int8"] if INT8_NAME in man["files"] else [])
    players: dict[str, tuple[Any, Any, str]] = {"teacher": (teacher.act, teacher.reset, f"teacher ({teacher.label})")}
    for p in precisions:
        players[f"student_{p}"] = (load_registered_student(project.root, version, p).act, None,
                                   f"student {version} ({p})")
    bl = reg.baseline("student")
    if bl is not None and bl != version:
        players["baseline"] = (load_registered_student(project.root, bl).act, None, f"baseline {bl}")
    files = {"fp32": reg.path("student", version, FP32_NAME)}
    if "int8" in precisions:
        files["int8"] = reg.path("student", version, INT8_NAME)
    runtime = str(meta.get("runtime", "fp32"))
    latency = latency_in_fresh_process({p: reg.path("student", version, n) for p, n in
                                        (("fp32", FP32_NAME), ("int8", INT8_NAME)) if p in precisions})
    shipped = latency.get(runtime, latency["fp32"])
    promoted_residual = reg.baseline("residual")
    note = None
    if tdesc.get("kind") == "residual" and promoted_residual != tdesc.get("residual_version"):
        note = (f"distilled from residual {tdesc.get('residual_version')}; the promoted residual is now "
                f"{promoted_residual or 'none'} (distill again to follow it)")

    runs: dict[str, Outcomes] = {}
    state: dict[str, Any] = {"chunk": 0, "parity": None}

    def draw(start: int, count: int) -> None:
        used = 0
        for key, (act, reset, label) in players.items():
            keep = 4096 if key == "student_fp32" and start == 0 else 0
            out, kept = run_episodes(mk, act, episodes=count, seed=first_seed, chunk=chunk, reset=reset, label=label,
                                     keep_obs=keep, first_chunk=state["chunk"])
            runs[key] = runs[key].extend(out) if key in runs else out
            used = out.chunks
            if keep:
                state["parity"] = parity(torch_student, kept, files)
        state["chunk"] += used

    def evidence() -> StudentEvidence:
        s = runs["student_fp32"]
        return StudentEvidence(
            episodes=s.episodes, successes=s.successes, collisions=s.collisions,
            gaps={p: paired_table(runs["teacher"].success, runs[f"student_{p}"].success) for p in precisions},
            non_finite=sum(runs[f"student_{p}"].non_finite for p in precisions),
            out_of_bounds=sum(runs[f"student_{p}"].out_of_bounds for p in precisions),
            latency_p50_ms=shipped["p50_us"] / 1000, latency_p99_ms=shipped["p99_us"] / 1000,
            fp32_parity=state["parity"]["fp32"],
            baseline=paired_table(runs["student_fp32"].success, runs["baseline"].success) if "baseline" in runs
            else None, teacher_note=note)

    plan = LookPlan.from_governance(g, first=episodes, sequential=sequential,
                                    cap=max_episodes or g.max_student_eval_episodes)
    res = run_looks(plan, draw, lambda conf: student_checks(evidence(), g, confidence=conf), on_look=on_look)
    s = runs["student_fp32"]
    card = Scorecard(kind="student", task=s.task, episodes=s.episodes,
                     metrics={name: o.as_dict() for name, o in runs.items()}, checks=res.checks, verdict=res.verdict,
                     reasons=res.reasons, block=block, confidence=res.looks[-1].confidence,
                     looks=[lk.as_dict() for lk in res.looks], plan=plan.as_dict())
    return StudentScore(card=card, evidence=evidence(), latency=latency, parity=state["parity"],
                        teacher=teacher.describe(), wall_s=time.perf_counter() - t0)


def apply_verdict(project: Project, card: Scorecard, version: str, promote: bool) -> str:
    """Record the verdict in the ledger and move the student baseline as it says; returns what was done.
    Promotion publishes exactly the version's files (the registry removes an older version's int8 export)."""
    return open_registry(project).apply_verdict("student", version, card, promote, no_baseline="no student baseline")


def headroom(budget_ms: float, p99_us: float) -> float:
    return budget_ms * 1000 / p99_us if p99_us > 0 else math.inf


def latency_line(budget_ms: float, lat: dict[str, float]) -> str:
    ok = lat["p99_us"] <= budget_ms * 1000
    return (f"p50 {lat['p50_us']:.1f} us / p99 {lat['p99_us']:.1f} us vs {budget_ms:g} ms budget: "
            f"{'MEETS' if ok else 'MISSES'} it ({headroom(budget_ms, lat['p99_us']):,.0f}x headroom at p99)")

