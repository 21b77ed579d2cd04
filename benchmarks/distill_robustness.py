"""Does the student's verdict hold across distillation seeds and thread counts? `distill --quantize` + `distill eval`.

Each run copies a project that has a promoted residual (the teacher) to a fresh temp folder and runs
exactly what a user runs, with `CADENZA_NUM_THREADS=T`:

    cadenza env distill <copy> --quantize --seed S
    cadenza env distill eval <copy>

then reads `student/eval_report.json`: the verdict, the student's success, its gap to the teacher in
fp32 and int8 (paired intervals at the deciding look's confidence), the episodes the scorecard used,
and the wall time of both commands.

    make demo                                                    # a project with a promoted residual
    .venv/bin/python benchmarks/distill_robustness.py --project build/demo/rescue-dog
    .venv/bin/python benchmarks/distill_robustness.py --project P --seeds 0,1 --threads 1 --workers 1
    .venv/bin/python benchmarks/distill_robustness.py --project P --set distill.hidden_dim=128 --out /tmp/h128.json

Writes benchmarks/results/distill_robustness.json and prints a table. If the project already has a
promoted student, each new student is also checked for regression against it (as a user's would be).
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
OUT = ROOT / "benchmarks" / "results" / "distill_robustness.json"
CADENZA = str(Path(sys.executable).with_name("cadenza"))


def _gap(check: dict | None) -> dict | None:
    return None if check is None else {"status": check["status"], "detail": check["detail"]}


def set_keys(toml: Path, settings: list[str]) -> None:
    """Apply ``section.key=value`` edits to a project's cadenza.toml (the section must be there; a key
    it lacks is added at its top)."""
    lines = toml.read_text().splitlines()
    for item in settings:
        dotted, value = item.split("=", 1)
        section, key = dotted.rsplit(".", 1)
        cur, hit, head = "", False, None
        for i, line in enumerate(lines):
            if line.startswith("["):
                cur = line.strip().strip("[]")
                head = i if cur == section else head
            elif cur == section and line.split("=")[0].strip() == key:
                lines[i], hit = f"{key} = {value}", True
        if not hit:
            if head is None:
                raise SystemExit(f"--set {item}: no [{section}] section in {toml}")
            lines.insert(head + 1, f"{key} = {value}")
    toml.write_text("\n".join(lines) + "\n")


def one_run(project: Path, seed: int, threads: int, settings: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="cadenza-distill-robust-") as tmp:
        proj = Path(tmp) / project.name
        shutil.copytree(project, proj, ignore=shutil.ignore_patterns("logs", "bench", "lora"))
        set_keys(proj / "cadenza.toml", settings)
        env = {**os.environ, "CADENZA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        d = subprocess.run([CADENZA, "env", "distill", str(proj), "--quantize", "--seed", str(seed)],
                           env=env, capture_output=True, text=True)
        distill_s = time.perf_counter() - t0
        e = subprocess.run([CADENZA, "env", "distill", "eval", str(proj)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rep_path = proj / "student" / "eval_report.json"
        if d.returncode != 0 or not rep_path.is_file():
            out = d if d.returncode != 0 else e
            return {"seed": seed, "threads": threads, "verdict": f"ERROR (exit {out.returncode})",
                    "error": (out.stderr or out.stdout)[-2000:], "wall_s": wall}
        rep = json.loads(rep_path.read_text())
        distill_rep = json.loads((proj / "student" / "distill_report.json").read_text())
    card = rep["scorecard"]
    checks = {c["name"]: c for c in card["checks"]}
    m = card["metrics"]
    return {
        "seed": seed, "threads": threads, "verdict": card["verdict"], "exit_code": e.returncode,
        "episodes": card["episodes"], "looks": len(card.get("looks") or []),
        "teacher_success": m["teacher"]["success_rate"],
        "fp32_success": m["student_fp32"]["success_rate"],
        "int8_success": m.get("student_int8", {}).get("success_rate"),
        "gap_fp32": _gap(checks.get("gap to teacher (fp32)")), "gap_int8": _gap(checks.get("gap to teacher (int8)")),
        "quant_aware": distill_rep.get("quant_aware"), "distill_s": distill_s, "wall_s": wall,
    }


def _pts(r: dict, key: str) -> float | None:
    s = r.get(f"{key}_success")
    return None if s is None else 100 * (r["teacher_success"] - s)


def table(runs: list[dict]) -> str:
    lines = ["| seed | threads | verdict | episodes | teacher | student fp32 (gap) | student int8 (gap) | wall |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: (r["seed"], r["threads"])):
        if "error" in r:
            lines.append(f"| {r['seed']} | {r['threads']} | {r['verdict']} | | | | | {r['wall_s']:.0f} s |")
            continue
        i8 = f"{r['int8_success']:.1%} ({_pts(r, 'int8'):+.1f})" if r["int8_success"] is not None else "-"
        lines.append(f"| {r['seed']} | {r['threads']} | {r['verdict']} | {r['episodes']:,} "
                     f"| {r['teacher_success']:.1%} | {r['fp32_success']:.1%} ({_pts(r, 'fp32'):+.1f}) | {i8} "
                     f"| {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", required=True, type=Path, help="a project with a promoted residual (the teacher)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated distillation seeds")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--workers", type=int, default=2, help="runs at once")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="edit the copies' cadenza.toml, e.g. --set distill.hidden_dim=128 (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"JSON to write (default {OUT.relative_to(ROOT)})")
    a = ap.parse_args()
    if not (a.project / "cadenza.toml").is_file():
        ap.error(f"--project: {a.project} has no cadenza.toml")
    if not (a.project / ".cadenza" / "registry" / "pointers.json").is_file():
        ap.error(f"--project: {a.project} has no registry; train and promote a residual first (make demo does)")
    todo = [(int(s), int(t)) for s in a.seeds.split(",") for t in a.threads.split(",")]
    runs: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, a.workers)) as ex:
        futs = {ex.submit(one_run, a.project.resolve(), s, t, a.set): (s, t) for s, t in todo}
        for f in as_completed(futs):
            r = f.result()
            runs.append(r)
            print(f"  seed {r['seed']} threads {r['threads']}: {r['verdict']} ({r['wall_s']:.0f} s)", flush=True)
    ok = [r for r in runs if "error" not in r]
    gaps = sorted(g for r in ok if (g := _pts(r, "int8")) is not None)
    res = {
        "cpu": cpu_name(), "machine": platform.machine(), "project": str(a.project), "settings": a.set,
        "runs": runs,
        "summary": {"runs": len(runs), "deploy": sum(r["verdict"] == "DEPLOY" for r in runs),
                    "median_int8_gap_pts": statistics.median(gaps) if gaps else None,
                    "int8_gap_range_pts": [gaps[0], gaps[-1]] if gaps else None,
                    "median_episodes": statistics.median(r["episodes"] for r in ok) if ok else None},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(table(runs))
    s = res["summary"]
    print(f"{s['deploy']}/{s['runs']} DEPLOY; int8 gap to the teacher median {s['median_int8_gap_pts']} pts "
          f"(range {s['int8_gap_range_pts']}); CPU {res['cpu']}; {a.out}")


if __name__ == "__main__":
    main()
