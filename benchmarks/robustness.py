"""Do verdicts hold across seeds, thread counts and tasks? The default `train`, on fresh copies.

Each run copies an example project to a fresh temp folder, runs exactly what a user runs
(`cadenza env residual train <copy> --seed S`, plus `--real` for the MuJoCo tasks) with
`CADENZA_NUM_THREADS=T`, and reads the train report: verdict, success and collisions with their
intervals (at the deciding look's confidence), the episodes the scorecard used, env steps at the
stop and of the kept round, the env steps its validation cards and its scorecard ran on the task
outside the training budget, and the wall time of the whole command.

    .venv/bin/python benchmarks/robustness.py                      # everything (about 2.5 hours on 2 cores)
    .venv/bin/python benchmarks/robustness.py --only dash          # one group: dash, mission, reacher, dog-real,
                                                                   # dash-sac, reacher-sac (algorithm = "sac"),
                                                                   # dash-sac-50k, reacher-sac-50k, dog-sac-50k
    .venv/bin/python benchmarks/robustness.py --workers 1          # one run at a time
    .venv/bin/python benchmarks/robustness.py --only dash-sac-50k --seeds 5,6,7,8,9   # other seeds than the group's
    .venv/bin/python benchmarks/robustness.py --only dash-sac-50k,reacher-sac-50k,dog-sac-50k --threads 1 \
        --out benchmarks/results/robustness_sac_50k.json           # the SAC residual at 50k, 1-thread runs
    .venv/bin/python benchmarks/robustness.py --only dash-sac-50k --isa avx2   # as on a CPU without AVX-512

Another CPU changes the low bits of every matrix product (a different kernel sums in a different
order), and training amplifies them into other policies. `--isa avx2` runs each command with the
AVX-512 kernels switched off where the libraries allow it (torch's own kernels, MKL, oneDNN, numpy,
OpenBLAS; see `ISA_ENV`), as on an AVX2-only CPU such as an AMD EPYC before Zen 4; on a CPU without
AVX-512 it changes nothing. Its runs are kept beside the native ones (the key is group, seed, threads, isa).

Runs already in the JSON (same group, seed, threads and isa) are kept and skipped, so a long sweep can be
run in parts; `--redo` runs the `--only` groups again. Writes benchmarks/results/robustness.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from cadenza.accel.hardware import cpu_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "robustness.json"
CADENZA = str(Path(sys.executable).with_name("cadenza"))

# group -> (example, extra args, edit to cadenza.toml, seeds, thread counts)
SAC = ("[residual]\n", '[residual]\nalgorithm = "sac"\n')  # the edit that makes a copy train the SAC residual
GROUPS: dict[str, tuple[str, list[str], tuple[str, str] | None, list[int], list[int]]] = {
    "dash": ("rescue-dog", [], None, [0, 1, 2, 3, 4], [1, 2]),
    "mission": ("rescue-dog", [], ('# episodes = "mission"', 'episodes = "mission"'), [0, 1, 2], [1]),
    "reacher": ("reacher", ["--real"], None, [0, 1, 2], [1]),
    "dog-real": ("rescue-dog", ["--real"], None, [0, 1, 2], [1]),
    # the off-policy learner (docs/config.md#sac), with a budget that lets it show where it lands
    "dash-sac": ("rescue-dog", ["--steps", "150000"], SAC, [0, 1, 2, 3, 4], [1]),
    "reacher-sac": ("reacher", ["--real", "--steps", "100000"], SAC, [0], [1]),
    # the [sample-efficiency] acceptance: the SAC residual's default plan with a budget of 50k env steps
    "dash-sac-50k": ("rescue-dog", ["--steps", "50000"], SAC, [0, 1, 2, 3, 4], [1, 2]),
    "reacher-sac-50k": ("reacher", ["--real", "--steps", "50000"], SAC, [0, 1, 2, 3], [1, 2]),
    "dog-sac-50k": ("rescue-dog", ["--real", "--steps", "50000"], SAC, [0, 1, 2, 3, 4], [1, 2]),
}


# the environment that makes a command compute as on an AVX2-only CPU (read by each library at start-up)
ISA_ENV: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
}


def one_run(group: str, seed: int, threads: int, isa: str = "native") -> dict:
    example, extra, edit, _, _ = GROUPS[group]
    with tempfile.TemporaryDirectory(prefix=f"cadenza-robust-{group}-") as tmp:
        proj = Path(tmp) / example
        shutil.copytree(ROOT / "examples" / example, proj)
        if edit is not None:
            toml = proj / "cadenza.toml"
            text = toml.read_text()
            assert edit[0] in text, f"{toml}: cannot apply {edit}"
            toml.write_text(text.replace(edit[0], edit[1]))
        env = {**os.environ, "CADENZA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), **ISA_ENV[isa]}
        t0 = time.perf_counter()
        p = subprocess.run([CADENZA, "env", "residual", "train", str(proj), "--seed", str(seed), *extra],
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        name = "train_report_real.json" if "--real" in extra else "train_report.json"
        rep_path = proj / "residual" / name
        if not rep_path.is_file():
            return {"group": group, "seed": seed, "threads": threads, "isa": isa,
                    "verdict": f"ERROR (exit {p.returncode})",
                    "error": (p.stderr or p.stdout)[-2000:], "wall_s": wall}
        rep = json.loads(rep_path.read_text())
    card = rep["scorecard"]
    cand = card["metrics"]["candidate"]
    base = card["metrics"]["base"]
    conf = card.get("confidence") or 0.95
    from cadenza.governance.stats import wilson

    def ci(k: int, n: int) -> list[float]:
        return list(wilson(k, n, conf))

    return {
        "group": group, "task": rep["task"], "seed": seed, "threads": threads, "isa": isa, "verdict": rep["verdict"],
        "exit_code": p.returncode, "success": cand["success_rate"], "success_ci": ci(cand["successes"], cand["episodes"]),
        "collision": cand["collision_rate"], "collision_ci": ci(cand["collisions"], cand["episodes"]),
        "base_success": base["success_rate"], "base_collision": base["collision_rate"],
        "episodes": card["episodes"], "looks": len(card.get("looks") or [1]), "confidence": conf,
        "env_steps": rep["env_steps"], "best_env_steps": rep.get("best_env_steps"), "stop_reason": rep["stop_reason"],
        # env steps run on the task outside the training budget (None: a report from before they were counted)
        "validation_env_steps": rep.get("validation_env_steps"), "scorecard_env_steps": rep.get("scorecard_env_steps"),
        "validation_wall_s": rep.get("validation_wall_s"),
        "train_wall_s": rep["wall_s"], "wall_s": wall,
    }


def _isa(r: dict) -> str:
    """The ISA a run computed with: ``native`` for runs from before `--isa` was recorded."""
    return r.get("isa", "native")


def _label(r: dict) -> str:
    """The group as a table and the summary name it: ``dash-sac-50k``, or ``dash-sac-50k (avx2)``."""
    return r["group"] if _isa(r) == "native" else f"{r['group']} ({_isa(r)})"


def _steps(n: int | None) -> str:
    """Env steps in a table cell: ``1.2M``, ``340k``, or blank where the report did not count them."""
    if n is None:
        return ""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def table(runs: list[dict]) -> str:
    lines = ["| group | seed | threads | verdict | success [CI] | collisions [CI] | episodes (looks) | env steps at stop "
             "(kept) | validation / scorecard env steps | wall |", "|---|---:|---:|---|---|---|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: (list(GROUPS).index(r["group"]), list(ISA_ENV).index(_isa(r)), r["seed"],
                                         r["threads"])):
        if "success" not in r:
            lines.append(f"| {_label(r)} | {r['seed']} | {r['threads']} | {r['verdict']} | | | | | | {r['wall_s']:.0f} s |")
            continue
        outside = (f"{_steps(r.get('validation_env_steps'))} / {_steps(r.get('scorecard_env_steps'))}"
                   if r.get("validation_env_steps") is not None else "")
        lines.append(
            f"| {_label(r)} | {r['seed']} | {r['threads']} | {r['verdict']} | {r['success']:.1%} "
            f"[{r['success_ci'][0]:.1%}, {r['success_ci'][1]:.1%}] | {r['collision']:.1%} "
            f"[{r['collision_ci'][0]:.1%}, {r['collision_ci'][1]:.1%}] | {r['episodes']:,} ({r['looks']}) | "
            f"{r['env_steps']:,} ({r['best_env_steps']:,}) | {outside} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def summary(runs: list[dict]) -> dict:
    out = {}
    for group, isa in ((group, isa) for group in GROUPS for isa in ISA_ENV):
        rs = [r for r in runs if r["group"] == group and _isa(r) == isa]
        if not rs:
            continue
        g = _label(rs[0])  # the group, with its ISA where that is not the CPU's own
        dep = [r for r in rs if r["verdict"] == "DEPLOY"]
        out[g] = {"runs": len(rs), "deploy": len(dep),
                  "median_env_steps_to_deploy": statistics.median(r["best_env_steps"] for r in dep) if dep else None,
                  "env_steps_range": [min(r["best_env_steps"] for r in dep), max(r["best_env_steps"] for r in dep)]
                  if dep else None,
                  "median_success": statistics.median(r["success"] for r in dep) if dep else None,
                  "median_wall_s": statistics.median(r["wall_s"] for r in rs)}
        counted = [r["validation_env_steps"] for r in rs if r.get("validation_env_steps") is not None]
        if counted:  # what the validation cards ran on the task, beside the training's env steps
            out[g]["median_validation_env_steps"] = statistics.median(counted)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    ap.add_argument("--workers", type=int, default=2, help="runs at a time (default 2: one per core)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds to run instead of each group's own (e.g. 5,6,7,8,9 for more seeds)")
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts to run (default: each group's own); run the 2-thread runs "
                         "with --workers 1, so that two of them do not share two cores")
    ap.add_argument("--isa", choices=list(ISA_ENV), default="native",
                    help="native (default): the CPU's own kernels; avx2: AVX-512 kernels off, as on an AVX2-only CPU")
    ap.add_argument("--redo", action="store_true",
                    help="forget the earlier runs of the --only groups (at this --isa) in the JSON")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    groups = [g.strip() for g in a.only.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"--only: unknown group(s) {', '.join(bad)}; expected {', '.join(GROUPS)}")

    def ints(flag: str, text: str | None) -> set[int] | None:
        try:
            return None if text is None else {int(x) for x in text.split(",") if x.strip()}
        except ValueError:
            ap.error(f"{flag}: expected comma-separated integers, got {text!r}")

    only_seeds = ints("--seeds", a.seeds)  # checked before the JSON is read or anything runs
    only_threads = ints("--threads", a.threads)
    prev = json.loads(a.out.read_text()).get("runs", []) if a.out.is_file() else []
    if a.redo:  # forget the earlier runs of the groups asked for, keep the others
        prev = [r for r in prev if r["group"] not in groups or _isa(r) != a.isa]
    done = {(r["group"], r["seed"], r["threads"], _isa(r)) for r in prev if not r["verdict"].startswith("ERROR")}
    prev = [r for r in prev if (r["group"], r["seed"], r["threads"], _isa(r)) in done]
    todo = [(g, s, t, a.isa) for g in groups for s in (sorted(only_seeds) if only_seeds else GROUPS[g][3])
            for t in GROUPS[g][4] if (g, s, t, a.isa) not in done and (only_threads is None or t in only_threads)]
    print(f"robustness: {len(todo)} runs to do ({len(prev)} kept), {a.workers} at a time, CPU: {cpu_name()}"
          + (f", {a.isa} kernels" if a.isa != "native" else ""), flush=True)
    runs = list(prev)

    def save() -> None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"kind": "cadenza.benchmarks.robustness", "cpu": cpu_name(), "cores": os.cpu_count(),
               "python": platform.python_version(), "runs": runs, "summary": summary(runs)}
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(a.out)

    with ThreadPoolExecutor(max_workers=max(1, a.workers)) as pool:
        for fut in as_completed([pool.submit(one_run, *job) for job in todo]):
            r = fut.result()
            runs.append(r)
            save()
            print(f"  {_label(r):<8} seed {r['seed']} threads {r['threads']}: {r['verdict']}"
                  + (f" ({r['success']:.1%} success, {r['collision']:.1%} collisions, {r['episodes']} episodes, "
                     f"{r['best_env_steps']:,} env steps, {r['wall_s']:.0f} s)" if "success" in r else ""), flush=True)
    save()
    print()
    print(table(runs))
    print()
    for g, s in summary(runs).items():
        med = f"{s['median_env_steps_to_deploy']:,.0f}" if s["median_env_steps_to_deploy"] else "-"
        val = (f"; validation cards ran a median {s['median_validation_env_steps']:,.0f} env steps"
               if "median_validation_env_steps" in s else "")
        print(f"{g}: {s['deploy']}/{s['runs']} DEPLOY, median env steps to DEPLOY {med}{val}")
    print(f"CPU: {cpu_name()}; JSON: {a.out}")


if __name__ == "__main__":
    main()
