"""The student scorecard: gap to the teacher, success, safety, latency, export parity, regression.

The student and its teacher (and the current student baseline) run the *same* held-out episodes,
so they are compared episode by episode: the gap ``teacher - student`` success gets a paired
interval (Newcombe's method 10 for paired proportions, built on Wilson intervals), which is much
narrower than an unpaired one when the two mostly succeed and fail on the same episodes.

Pure functions first (``paired_diff_interval``, ``student_checks``), then the I/O that runs them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadenza.governance.registry import Registry
from cadenza.governance.scorecard import (
    Check,
    Scorecard,
    _safety,
    decide,
    enough_episodes,
    rate_at_least,
    rate_at_most,
)
from cadenza.governance.stats import smallest_passing, wilson
from cadenza.project.config import Project

EXPORT_PARITY_TOL = 1e-5  # fp32 export vs the torch student, max |action difference|


# ---------------------------------------------------------------------------------------------- stats
def paired_table(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """(both, only a, only b, neither) for two boolean outcome vectors over the same episodes."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same episodes, got {a.shape} and {b.shape}")
    return int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())


def paired_diff_interval(both: int, only_a: int, only_b: int, neither: int,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Interval for ``p_a - p_b`` from paired outcomes (Newcombe 1998, method 10: Wilson score
    intervals of the two margins combined with the correlation of the pairs)."""
    n = both + only_a + only_b + neither
    if n <= 0:
        return -1.0, 1.0
    ka, kb = both + only_a, both + only_b
    pa, pb = ka / n, kb / n
    la, ua = wilson(ka, n, confidence)
    lb, ub = wilson(kb, n, confidence)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(denom) if denom > 0 else 0.0
    d = pa - pb
    lo = d - math.sqrt(max((pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2, 0.0))
    hi = d + math.sqrt(max((ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2, 0.0))
    return max(-1.0, lo), min(1.0, hi)


def _scaled_episodes_needed(table: tuple[int, int, int, int], decided: Any, confidence: float,
                            n_max: int = 1_000_000) -> int | None:
    """Smallest n for which the same paired rates, scaled to n episodes, give a decided interval."""
    n0 = sum(table)
    if n0 == 0:
        return None

    def ok(n: int) -> bool:
        scaled = [round(c * n / n0) for c in table]
        return decided(*paired_diff_interval(*scaled, confidence=confidence))

    return smallest_passing(ok, n_max, start=n0, tol=max(1, n0 // 100))


def gap_check(name: str, table: tuple[int, int, int, int], max_gap: float, confidence: float) -> Check:
    """``table`` = paired (both, teacher only, student only, neither) successes. PASS when the whole
    interval of teacher - student success is at or below ``max_gap``; FAIL when wholly above."""
    n = sum(table)
    lo, hi = paired_diff_interval(*table, confidence=confidence)
    gap = (table[1] - table[2]) / n if n else 0.0
    txt = (f"teacher - student success {100 * gap:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] "
           f"(paired, {table[1]} episodes only the teacher won, {table[2]} only the student; "
           f"allowed gap {100 * max_gap:.1f} pts)")
    if hi <= max_gap:
        return Check(name, "PASS", txt)
    if lo > max_gap:
        return Check(name, "FAIL", txt + ": too far from the teacher")
    need = _scaled_episodes_needed(table, lambda lo_, hi_: hi_ <= max_gap or lo_ > max_gap, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles it",
                 more_episodes=None if need is None else max(need - n, 1))


def not_worse_paired(name: str, table: tuple[int, int, int, int], margin: float, confidence: float) -> Check:
    """``table`` = paired (both, candidate only, reference only, neither); non-inferiority with ``margin``."""
    n = sum(table)
    lo, hi = paired_diff_interval(*table, confidence=confidence)
    d = (table[1] - table[2]) / n if n else 0.0
    txt = (f"improvement {100 * d:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}] (paired; allowed worsening "
           f"{100 * margin:.1f} pts)")
    if lo >= -margin:
        return Check(name, "PASS", txt)
    if hi < -margin:
        return Check(name, "FAIL", txt + ": regression")
    need = _scaled_episodes_needed(table, lambda lo_, hi_: lo_ >= -margin or hi_ < -margin, confidence)
    return Check(name, "UNDECIDED", txt + ": interval straddles the margin",
                 more_episodes=None if need is None else max(need - n, 1))


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


def student_checks(ev: StudentEvidence, g: Any) -> list[Check]:
    """The checks of a student candidate; ``g`` is the ``[governance]`` section."""
    c = g.confidence
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


def score_student(project: Project, version: str, *, episodes: int, real: bool = False,
                  seed: int | None = None) -> StudentScore:
    """Score a registered student against its teacher (and the current student baseline) on the same
    held-out episodes; measure its latency and re-check its fp32 export's parity."""
    from cadenza.distill.dagger import load_teacher
    from cadenza.distill.evaluate import run_episodes
    from cadenza.distill.export import load_weights, parity
    from cadenza.distill.runtime import (
        FP32_NAME,
        INT8_NAME,
        WEIGHTS_NAME,
        latency_in_fresh_process,
        load_registered_student,
    )
    from cadenza.residual.scoring import EVAL_SEED, eval_chunk
    from cadenza.tasks.factory import make_task

    t0 = time.perf_counter()
    g = project.config.governance
    reg = Registry(project.root)
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
    seed = EVAL_SEED if seed is None else seed

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real)

    teacher_out, _ = run_episodes(mk, teacher.act, episodes=episodes, seed=seed, chunk=chunk, reset=teacher.reset,
                                  label=f"teacher ({teacher.label})")
    runs = {"teacher": teacher_out}
    precisions = ["fp32"] + (["int8"] if INT8_NAME in man["files"] else [])
    obs_sample = np.zeros((0, arch.obs_dim), np.float32)
    students = {}
    for p in precisions:
        rt = load_registered_student(project.root, version, p)
        students[p] = rt
        out, kept = run_episodes(mk, rt.act, episodes=episodes, seed=seed, chunk=chunk, label=f"student {version} ({p})",
                                 keep_obs=4096 if p == "fp32" else 0)
        runs[f"student_{p}"] = out
        if p == "fp32":
            obs_sample = kept
    bl = reg.baseline("student")
    baseline_table = None
    if bl is not None and bl != version:
        base_rt = load_registered_student(project.root, bl)
        base_out, _ = run_episodes(mk, base_rt.act, episodes=episodes, seed=seed, chunk=chunk, label=f"baseline {bl}")
        runs["baseline"] = base_out
        baseline_table = paired_table(runs["student_fp32"].success, base_out.success)
    files = {"fp32": reg.path("student", version, FP32_NAME)}
    if "int8" in precisions:
        files["int8"] = reg.path("student", version, INT8_NAME)
    par = parity(torch_student, obs_sample, files)
    runtime = str(meta.get("runtime", "fp32"))
    latency = latency_in_fresh_process({p: reg.path("student", version, n) for p, n in
                                        (("fp32", FP32_NAME), ("int8", INT8_NAME)) if p in precisions})
    shipped = latency.get(runtime, latency["fp32"])
    promoted_residual = reg.baseline("residual")
    note = None
    if tdesc.get("kind") == "residual" and promoted_residual != tdesc.get("residual_version"):
        note = (f"distilled from residual {tdesc.get('residual_version')}; the promoted residual is now "
                f"{promoted_residual or 'none'} (distill again to follow it)")
    s = runs["student_fp32"]
    ev = StudentEvidence(
        episodes=s.episodes, successes=s.successes, collisions=s.collisions,
        gaps={p: paired_table(teacher_out.success, runs[f"student_{p}"].success) for p in precisions},
        non_finite=sum(runs[f"student_{p}"].non_finite for p in precisions),
        out_of_bounds=sum(runs[f"student_{p}"].out_of_bounds for p in precisions),
        latency_p50_ms=shipped["p50_us"] / 1000, latency_p99_ms=shipped["p99_us"] / 1000,
        fp32_parity=par["fp32"], baseline=baseline_table, teacher_note=note,
    )
    checks = student_checks(ev, g)
    verdict, reasons = decide(checks)
    metrics: dict[str, Any] = {name: o.as_dict() for name, o in runs.items()}
    card = Scorecard(kind="student", task=s.task, episodes=s.episodes, metrics=metrics, checks=checks,
                     verdict=verdict, reasons=reasons)
    return StudentScore(card=card, evidence=ev, latency=latency, parity=par, teacher=teacher.describe(),
                        wall_s=time.perf_counter() - t0)


def apply_verdict(project: Project, card: Scorecard, version: str, promote: bool) -> str:
    """Record the verdict in the ledger and move the student baseline as it says; returns what was done.
    Promotion publishes exactly the version's files (the registry removes an older version's int8 export)."""
    return Registry(project.root).apply_verdict("student", version, card, promote, no_baseline="no student baseline")


def headroom(budget_ms: float, p99_us: float) -> float:
    return budget_ms * 1000 / p99_us if p99_us > 0 else math.inf


def latency_line(budget_ms: float, lat: dict[str, float]) -> str:
    ok = lat["p99_us"] <= budget_ms * 1000
    return (f"p50 {lat['p50_us']:.1f} us / p99 {lat['p99_us']:.1f} us vs {budget_ms:g} ms budget: "
            f"{'MEETS' if ok else 'MISSES'} it ({headroom(budget_ms, lat['p99_us']):,.0f}x headroom at p99)")

