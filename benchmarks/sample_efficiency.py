"""Sample efficiency: sustained steps to the success threshold, residual learners against from-scratch RL.

Runs the bench (:func:`cadenza.bench.runner.run_bench`, what ``cadenza env residual bench`` runs: the
same batched task, curriculum, evaluations and accounting for every arm) on a fresh copy of the
project, then measures for every run the **sustained** steps to the threshold: the env steps of the
first of two consecutive evaluations at or above ``governance.success_threshold`` (a run that stops
early, as the residual does once its validation card clears, counts its final evaluation as the
second). Every env step a learner takes is counted, warm-up and base-only collection included (the
learners count them in ``env_steps_total``).

Per arm: the median over seeds (a seed that never sustains the threshold ranks above every number,
so the median is "not reached" unless more than half of the seeds reached it), the range over seeds,
and wall-clock and CPU seconds to that point (the run's totals prorated by env steps: training
cost grows about linearly with steps; off-policy learners cost more per step, which these columns show).
The headline is the ratio of the best from-scratch arm's median to each residual arm's median; when
the from-scratch arms never sustain the threshold within ``--steps``, the ratio is a lower bound
(``> budget / residual median``), and says so: run longer for a number. Each ratio comes with a 95% percentile
bootstrap interval over seeds (:func:`ratio_interval`; its upper end is unbounded when too many resamples of the
from-scratch arm have no median).

    .venv/bin/python benchmarks/sample_efficiency.py [PROJECT] [--steps 200000] [--residual-steps N]
        [--seeds 5] [--arms residual,residual-sac,full,sb3,sb3-sac] [--workers 2] [--eval-episodes 100]
    .venv/bin/python benchmarks/sample_efficiency.py --from A.json B.json ...   # ratios across earlier runs
    .venv/bin/python benchmarks/sample_efficiency.py ... [--stop-when-sustained] [--only-seeds 2,3] [--resume]

Long runs: every evaluation is appended to ``<out>.evals.jsonl`` as it comes and every finished run to
``<out>.runs.jsonl``; ``--resume`` reuses the finished runs (same settings) and runs the rest, ``--only-seeds`` runs
part of the seeds now, ``--stop-when-sustained`` ends a run once its sustained steps are known (docs/bench.md).

``--residual-steps`` gives the residual arms a budget of their own (default: ``--steps``): the
from-scratch arms need millions of steps to sustain the threshold, a residual arm run that long only
costs time once it has (each arm's evaluations are spaced over its own budget). Writes
``benchmarks/results/sample_efficiency.json`` and ``sample_efficiency.png`` (every arm's curve, mean
and min-max band over seeds, on a log axis of env steps so both budgets read) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from cadenza.accel.hardware import cpu_name
from cadenza.bench.arms import RESIDUAL_KINDS
from cadenza.bench.measure import median_steps, sustained
from cadenza.bench.plot import plot_curves
from cadenza.bench.runner import resolve_settings, run_bench
from cadenza.errors import CadenzaError
from cadenza.project.config import load_project
from cadenza.utils.io import atomic_write_json, json_default

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "sample_efficiency.json"


def prorated(run: dict[str, Any], steps: int | None, key: str) -> float | None:
    """Seconds (``wall_s`` or ``cpu_s``) of the run up to ``steps`` env steps, prorated by env steps."""
    if steps is None or not run["env_steps"]:
        return None
    return run[key] * min(steps / run["env_steps"], 1.0)


def arm_rows(report: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    rows = []
    for a in report["arms"]:
        if a["skipped"] or not a["runs"]:
            rows.append({"arm": a["id"], "kind": a["kind"], "label": a["label"], "skipped": a.get("note", "")})
            continue
        per_seed = []
        for r in a["runs"]:
            s = sustained(r["curve"], threshold)
            per_seed.append({"seed": r["seed"], "sustained_steps": s, "env_steps": r["env_steps"],
                             "final_success": r["final"]["success_rate"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
                             "wall_s_to_threshold": prorated(r, s, "wall_s"),
                             "cpu_s_to_threshold": prorated(r, s, "cpu_s")})
        reached = [p["sustained_steps"] for p in per_seed if p["sustained_steps"] is not None]
        times = [p["wall_s_to_threshold"] for p in per_seed if p["wall_s_to_threshold"] is not None]
        cpus = [p["cpu_s_to_threshold"] for p in per_seed if p["cpu_s_to_threshold"] is not None]
        rows.append({"arm": a["id"], "kind": a["kind"], "label": a["label"], "residual": a["kind"] in RESIDUAL_KINDS,
                     "seeds": len(per_seed), "reached": len(reached),
                     "median_steps": median_steps([p["sustained_steps"] for p in per_seed]),
                     "range": [min(reached), max(reached)] if reached else None,
                     "median_wall_s": statistics.median(times) if times else None,
                     "median_cpu_s": statistics.median(cpus) if cpus else None,
                     "final_success_median": statistics.median(p["final_success"] for p in per_seed),
                     "per_seed": per_seed})
    return rows


def ratio_interval(residual: list[int | None], scratch: list[int | None], level: float = 0.95,
                   draws: int = 10_000, seed: int = 0) -> tuple[float, float | None]:
    """A percentile bootstrap interval of ``median(scratch) / median(residual)``: each arm's seeds resampled with
    replacement, medians as :func:`median_steps` takes them ("never" ranks above every number). A resample whose
    from-scratch median is "never" gives an unbounded ratio, so the upper end is None when more than
    ``(1 - level) / 2`` of the draws do; one whose residual median is "never" gives 0."""
    rng = np.random.default_rng(seed)
    res = np.array([math.inf if v is None else float(v) for v in residual])
    scr = np.array([math.inf if v is None else float(v) for v in scratch])
    r_med = np.median(rng.choice(res, (draws, len(res))), axis=1)
    s_med = np.median(rng.choice(scr, (draws, len(scr))), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isinf(r_med), 0.0, s_med / r_med)  # an even count's median of inf and x is inf too
    lo, hi = np.quantile(ratio, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(lo), (None if math.isinf(hi) else float(hi))


def ratios(rows: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Each residual arm against the best (fewest median steps) from-scratch arm, with a 95% bootstrap interval over
    seeds (:func:`ratio_interval`)."""
    scratch = [r for r in rows if not r.get("skipped") and not r["residual"]]
    reached = [r for r in scratch if r["median_steps"] is not None]
    best = min(reached, key=lambda r: r["median_steps"]) if reached else None
    out = []
    for r in rows:
        if r.get("skipped") or not r["residual"]:
            continue
        if r["median_steps"] is None:
            out.append({"residual": r["arm"], "ratio": None, "note": "the residual arm did not sustain the threshold"})
        elif best is not None:
            lo, hi = ratio_interval([p["sustained_steps"] for p in r["per_seed"]],
                                    [p["sustained_steps"] for p in best["per_seed"]])
            out.append({"residual": r["arm"], "against": best["arm"], "ratio": best["median_steps"] / r["median_steps"],
                        "lower_bound": False, "interval": [lo, hi]})
        elif scratch:
            out.append({"residual": r["arm"], "against": "every from-scratch arm (none sustained the threshold)",
                        "ratio": budget / r["median_steps"], "lower_bound": True,
                        "note": f"> {budget / r['median_steps']:.1f}x: no from-scratch arm sustained the threshold "
                                f"within {budget:,} steps; run longer for a number"})
    return out


def from_results(paths: list[Path]) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The arms of earlier runs of this script (their JSONs), for a ratio across runs (e.g. a residual arm run to 100k
    against a from-scratch arm run to 2M), the largest budget among them, and a note per arm found in more than one
    file: the first file that has an arm gives it (list the files in the order you want)."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    notes: list[str] = []
    budget = 0
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            arms, steps = doc["arms"], int(doc["settings"]["steps"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: {path}: not a result of this script ({type(e).__name__}: {e})") from None
        for r in arms:
            if r["arm"] in seen:
                notes.append(f"arm {r['arm']!r}: from {seen[r['arm']]}, not {path}")
                continue
            seen[r["arm"]] = path
            rows.append(r)
        budget = max(budget, steps)
    return rows, budget, notes


def print_report(console: Console, rows: list[dict[str, Any]], result_ratios: list[dict[str, Any]], title: str) -> None:
    """The table of arms and a line per ratio (with its bootstrap interval)."""
    t = Table(title=title)
    for col in ("arm", "reached", "median steps", "range", "wall s to it", "CPU s to it", "final success (median)"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for r in rows:
        if r.get("skipped"):
            t.add_row(r["label"], "skipped", r["skipped"][:40], "", "", "", "")
            continue
        med = f"{r['median_steps']:,.0f}" if r["median_steps"] is not None else "not reached"
        rng = f"{r['range'][0]:,}-{r['range'][1]:,}" if r["range"] else "-"
        t.add_row(r["label"], f"{r['reached']}/{r['seeds']}", med, rng,
                  f"{r['median_wall_s']:.0f}" if r["median_wall_s"] is not None else "-",
                  f"{r['median_cpu_s']:.0f}" if r["median_cpu_s"] is not None else "-",
                  f"{r['final_success_median']:.1%}")
    console.print(t)
    for q in result_ratios:
        if q["ratio"] is None or q["lower_bound"]:
            console.print(f"{q['residual']}: {q['note']}")
            continue
        lo, hi = q["interval"]
        console.print(f"{q['residual']}: {q['ratio']:.1f}x fewer env steps than {q['against']} (medians; 95% bootstrap "
                      f"interval over seeds {lo:.1f}x to {'unbounded' if hi is None else f'{hi:.1f}x'})")


RUN_KEYS = ("project", "steps", "residual_steps", "eval_episodes", "stop_when_sustained")  # a run log's settings


def run_log_paths(out: Path) -> tuple[Path, Path]:
    """The finished runs' log (``<out>.runs.jsonl``: a settings line, then one finished run per line) and the
    evaluations' log (``<out>.evals.jsonl``: every evaluation of every run as it comes), beside ``out``."""
    return out.with_suffix(".runs.jsonl"), out.with_suffix(".evals.jsonl")


def log_settings(a: argparse.Namespace) -> dict[str, Any]:
    """What a run log's runs depend on: a resumed call must ask for the same."""
    return {"project": Path(a.project).name, "steps": a.steps, "residual_steps": a.residual_steps,
            "eval_episodes": a.eval_episodes, "stop_when_sustained": a.stop_when_sustained}


def read_run_log(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished runs of an earlier call (``--resume``); none when the log does not exist. A log of other settings,
    or a line that is not JSON, is a one-line SystemExit naming the file (and line)."""
    if not path.exists():
        return []
    runs: list[dict[str, Any]] = []
    before = settings  # an empty log (made and stopped before its settings line) holds nothing to check
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            doc = json.loads(line)
            if n == 1:
                before = {k: doc["settings"][k] for k in RUN_KEYS}
                continue
            missing = [k for k in ("arm", "seed", "env_steps", "curve", "final", "wall_s", "cpu_s") if k not in doc]
            if missing:
                raise KeyError(missing[0])
            runs.append(doc)
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: {path}, line {n}: not a line of this script's run log "
                             f"({type(e).__name__}: {e})") from None
    if before != settings:
        diff = ", ".join(f"{k} {before[k]!r} (now {settings[k]!r})" for k in RUN_KEYS if before[k] != settings[k])
        raise SystemExit(f"error: {path}: its runs were made with other settings: {diff}; run with those, or --fresh")
    return runs


def parse_seeds(text: str | None, seeds: list[int]) -> list[int] | None:
    """``--only-seeds 2,3``: a subset of the bench's seeds (None: all)."""
    if text is None:
        return None
    try:
        got = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: --only-seeds: expected comma-separated integers, got {text!r}") from None
    bad = [x for x in got if x not in seeds]
    if not got or bad:
        raise SystemExit(f"error: --only-seeds: expected some of the bench's seeds {seeds}, got {text!r}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", nargs="?", default=str(ROOT / "examples" / "rescue-dog"))
    ap.add_argument("--steps", type=int, default=200_000, help="env steps per run (the budget)")
    ap.add_argument("--residual-steps", type=int, default=None,
                    help="env steps per run of the residual arms (default: --steps)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per arm (the project's [residual] seed and up)")
    ap.add_argument("--arms", default="residual,residual-sac,full,sb3,sb3-sac",
                    help="comma-separated arms (residual first; sb3-sac-utd1 is SB3 SAC at one update per env step)")
    ap.add_argument("--workers", type=int, default=None, help="runs at a time (default: physical cores)")
    ap.add_argument("--eval-episodes", type=int, default=100, help="episodes per periodic evaluation")
    ap.add_argument("--out", type=Path, default=OUT, help="the JSON to write (the PNG beside it)")
    ap.add_argument("--from", dest="sources", type=Path, nargs="+", metavar="JSON", default=None,
                    help="run nothing: read the arms of earlier JSONs of this script (an arm in several: the first "
                         "file's) and print the table and the ratios across them; writes nothing")
    ap.add_argument("--stop-when-sustained", action="store_true",
                    help="stop each run once two consecutive evaluations reach the threshold (its sustained steps are "
                         "then known; the final evaluation is taken there): a from-scratch run costs only up to them")
    ap.add_argument("--only-seeds", default=None, metavar="S,S",
                    help="run only these of the --seeds now (e.g. 2,3), the rest later with --resume; the JSON and "
                         "table cover the runs finished so far and list the rest as pending")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the finished runs in <out>.runs.jsonl (same settings) and run only the others")
    ap.add_argument("--fresh", action="store_true",
                    help="start over when <out>.runs.jsonl holds runs of an earlier call (it is kept as .bak)")
    a = ap.parse_args()
    console = Console()
    if a.sources:
        rows, budget, notes = from_results(a.sources)
        for n in notes:
            console.print(n)
        print_report(console, rows, ratios(rows, budget),
                     f"sustained steps, the arms of {', '.join(p.name for p in a.sources)}")
        return
    out = a.out
    with tempfile.TemporaryDirectory(prefix="cadenza-sample-eff-") as tmp:
        root = Path(tmp) / Path(a.project).name
        shutil.copytree(a.project, root, ignore=shutil.ignore_patterns(".cadenza", ".cadenza-env", "bench", "runs"))
        try:  # a bad project or flag: one line, not a traceback
            proj = load_project(root)
            s = resolve_settings(proj, steps=a.steps, seeds=a.seeds, arms=a.arms, workers=a.workers,
                                 eval_episodes=a.eval_episodes)
        except CadenzaError as e:
            raise SystemExit(f"error: {e}") from None
        if a.residual_steps is not None:
            if a.residual_steps < 1:
                raise SystemExit(f"--residual-steps must be >= 1, got {a.residual_steps}")
            s.arm_steps = {k: a.residual_steps for k in RESIDUAL_KINDS}
        only = parse_seeds(a.only_seeds, s.seeds)
        runs_log, evals_log = run_log_paths(out)
        settings = log_settings(a)
        if a.resume and a.fresh:
            raise SystemExit("error: --resume and --fresh: choose one")
        if a.resume:
            prior = read_run_log(runs_log, settings)
        elif runs_log.exists() and not a.fresh:
            raise SystemExit(f"error: {runs_log} holds the runs of an earlier call; --resume to continue it, "
                             "--fresh to start over")
        else:
            prior = []
            for path in (runs_log, evals_log):  # an earlier call's logs are kept, not overwritten
                if path.exists():
                    path.replace(path.with_name(path.name + ".bak"))
        if not runs_log.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            runs_log.write_text(json.dumps({"settings": {**settings, "cpu": cpu_name()}}) + "\n")
        s.evals_log, s.stop_when_sustained = evals_log, a.stop_when_sustained
        wanted = {(arm.id, seed) for arm in s.arms for seed in s.seeds}
        prior = [r for r in prior if (r["arm"], r["seed"]) in wanted]
        if prior:
            console.print(f"resuming: {len(prior)} finished runs from {runs_log}")
        t0 = time.perf_counter()

        def on_run(r: dict[str, Any], done: int, total: int) -> None:
            with runs_log.open("a", encoding="utf-8") as f:  # kept as it finishes: a stopped call loses no run
                f.write(json.dumps(r, default=json_default) + "\n")
            console.print(f"  {done}/{total}: {r['arm']} seed {r['seed']}: {r['env_steps']:,} steps, "
                          f"{r['wall_s']:.0f} s, final success {r['final']['success_rate']:.1%}")

        res = run_bench(proj, s, on_run=on_run, out_root=Path(tmp) / "bench", prior_runs=prior, only_seeds=only)
        threshold = proj.config.governance.success_threshold
        rows = arm_rows(res.report, threshold)
        done = {(r["arm"], r["seed"]) for a_ in res.report["arms"] for r in a_["runs"]}  # prior runs included
        pending = [{"arm": arm, "seed": seed} for arm, seed in sorted(wanted - done)]
        result = {"project": a.project, "cpu": cpu_name(), "settings": {**vars(a), "out": str(out)},
                  "threshold": threshold,
                  "definition": "first of two consecutive evaluations at or above the threshold; every env step "
                                "counted; times prorated by env steps",
                  "wall_s": round(time.perf_counter() - t0, 1), "arms": rows, "ratios": ratios(rows, a.steps),
                  "base_alone": res.report.get("base"), "pending": pending}
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_curves(res.report, out.with_suffix(".png"), log_x=True, mark_reach=False)  # reaching is sustained here
    atomic_write_json(out, result)
    budgets = f"budget {a.steps:,} steps" + (f" ({a.residual_steps:,} for the residual arms)"
                                               if a.residual_steps is not None else "")
    print_report(console, rows, result["ratios"],
                 f"sustained steps to {threshold:.0%}, {a.seeds} seeds, {budgets}; CPU {cpu_name()}")
    if pending:
        names = ", ".join(f"{p['arm']} seed {p['seed']}" for p in pending)
        console.print(f"partial: {len(pending)} runs pending ({names}); run again with --resume")
    console.print(f"wrote {out} and {out.with_suffix('.png')}; finished runs in {runs_log}")


if __name__ == "__main__":
    main()
