"""Residual RL against full RL on a built-in MuJoCo task: the full-budget `bench --real` figures.

Copies ``examples/<task>`` to a temporary folder (the example stays clean), runs
``cadenza env residual bench <copy> --real`` with the given budget, and writes a summary of the
report (per arm: final success with its interval, steps to the threshold per seed, CPU seconds,
cost; the verdict and ratios; wall time and load) to ``benchmarks/results/real_bench_<task>.json``,
plus a copy of ``curves.png`` next to it. CI runs the same command at a tiny budget
(``tests/test_bench_cli.py``); these are the figures quoted in docs/results.md.

    OMP_NUM_THREADS=1 python benchmarks/real_bench.py                         # reacher, 200k x 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/real_bench.py --steps 50000 --seeds 1 --arms residual,full
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cadenza.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def summarise(rep: dict[str, Any]) -> dict[str, Any]:
    arms = {}
    for a in rep["arms"]:
        if a["skipped"]:
            arms[a["id"]] = {"skipped": a["note"]}
            continue
        s = a["summary"]
        arms[a["id"]] = {
            "label": a["label"], "reward": a["reward"], "success_rate": s["success_rate"],
            "success_ci": s["success_ci"], "collision_rate": s["collision_rate"], "env_steps": s["env_steps"],
            "steps_to_threshold": s["steps_to_threshold"], "steps_to_threshold_median": s["steps_to_threshold_median"],
            "cpu_s_per_seed": s["cpu_s"], "wall_s_per_seed": s["wall_s"], "dollars_per_seed": s["dollars"],
        }
    return {"task": rep["task"], "command": rep["command"], "base": rep["base"], "arms": arms,
            "verdict": rep["verdict"], "bench_wall_s": rep["timing"]["bench_wall_s"], "machine": rep["machine"],
            "settings": rep["settings"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="reacher", choices=["reacher", "rescue-dog"], help="example project")
    ap.add_argument("--steps", type=int, default=200_000, help="env steps per arm and seed (default 200000)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    ap.add_argument("--arms", default="residual,full,sb3", help="arms to run (default residual,full,sb3)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cadenza-real-bench-") as tmp:
        proj = Path(tmp) / args.task
        shutil.copytree(ROOT / "examples" / args.task, proj,
                        ignore=shutil.ignore_patterns(".cadenza*", "bench", "residual", "student", "registry*"))
        exe = Path(sys.executable).with_name("cadenza")
        cmd = [str(exe) if exe.exists() else "cadenza", "env", "residual", "bench", str(proj), "--real",
               "--steps", str(args.steps), "--seeds", str(args.seeds), "--arms", args.arms]
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env={**os.environ, "CADENZA_NUM_THREADS": os.environ.get("CADENZA_NUM_THREADS", "1")},
                            check=False).returncode
        wall = time.perf_counter() - t0
        outs = sorted((proj / "bench").glob("*/report.json"))
        if not outs:
            print(f"real_bench: the bench wrote no report (exit {rc})", file=sys.stderr)
            return 1
        rep = json.loads(outs[-1].read_text())
        summary = summarise(rep) | {"exit_code": rc, "command_wall_s": wall}
        RESULTS.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS / f"real_bench_{args.task}.json", summary)
        shutil.copyfile(outs[-1].parent / "curves.png", RESULTS / f"real_bench_{args.task}_curves.png")

    table = Table(title=f"bench \\[{summary['task']}], {args.steps:,} env steps x {args.seeds} seeds")
    for col in ("arm", "final success", "95% CI", "steps to threshold (per seed)", "CPU s / seed"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, s in summary["arms"].items():
        if "skipped" in s:
            table.add_row(arm, "skipped", "", s["skipped"][:40], "")
            continue
        reach = ", ".join("never" if x is None else f"{x:,}" for x in s["steps_to_threshold"])
        table.add_row(arm, f"{s['success_rate']:.1%}", f"[{s['success_ci'][0]:.1%}, {s['success_ci'][1]:.1%}]",
                      reach, f"{s['cpu_s_per_seed']:.0f}")
    b = summary["base"]
    table.add_row("base alone", f"{b['success_rate']:.1%}", "", "", "0")
    console = Console()
    console.print(table)
    console.print(f"verdict: {summary['verdict']['outcome']}  ({summary['verdict'].get('line', '')})", markup=False)
    console.print(f"wall {wall / 60:.1f} min; wrote {RESULTS / f'real_bench_{args.task}.json'}", markup=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
