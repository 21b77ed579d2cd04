"""The LoRA head against the scripted planner in missions, as ``env run`` flies them.

For each perturbation level, ``--episodes`` missions with ``--policy scripted`` and the same missions
(same seeds: same sites, same robots) with ``--policy lora`` (the promoted head), through
:func:`cadenza.mission.runner.run_missions`, the library call behind ``cadenza env run``; each with
its Wilson interval and the paired difference (lora - scripted, Newcombe's paired interval).

Then, at perturbation 0, the head on goal paraphrases nobody trained on (:data:`PARAPHRASES`, the
held-out list of ``tests/test_lora_acceptance.py``) against the same sites with the listed goals; the
scripted planner refuses every paraphrase (counted).

    .venv/bin/python benchmarks/lora_missions.py [PROJECT] [--episodes 100] [--seed 0]

Writes ``benchmarks/results/lora_missions.json`` and prints tables. Goals: success within 5 points of
scripted; paraphrase success at least 85% of the listed goals'.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cadenza.accel.hardware import cpu_name
from cadenza.errors import CadenzaError
from cadenza.governance.registry import Registry
from cadenza.governance.stats import paired_diff_interval, paired_table, wilson
from cadenza.lora.planner import KIND, LoraPlanner, load_version
from cadenza.mission.runner import RunOptions, run_missions
from cadenza.project.config import load_project
from cadenza.utils.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "lora_missions.json"
# Paraphrases of the rescue-dog goals that are in no example, no generated paraphrase and no test data
# the head was trained on (written by hand; tests/test_lora_acceptance.py reads the same file).
PARAPHRASES: dict[str, list[str]] = json.loads(
    (Path(__file__).resolve().parents[1] / "examples" / "rescue-dog" / "heldout_paraphrases.json")
    .read_text(encoding="utf-8"))["paraphrases"]


def rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"successes": k, "missions": n, "rate": k / n, "ci95": [lo, hi]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", nargs="?", default="examples/rescue-dog")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", default="0,1.0")
    ap.add_argument("--version", default=None, help="lora version (default: the promoted one, else the latest); "
                    "a version that is not promoted is flown as `env run --policy lora` would fly it if it were")
    args = ap.parse_args()
    torch.set_num_threads(1)
    proj = load_project(args.project)
    reg = Registry(proj.root)
    version = args.version or reg.baseline(KIND) or reg.latest(KIND)
    if version is None:
        raise SystemExit(f"{proj.root} has no LoRA head; run `cadenza env lora finetune {proj.root}` first")
    planner = LoraPlanner(load_version(proj, version), version)
    con = Console()
    result: dict[str, Any] = {"project": str(proj.root), "cpu": cpu_name(), "episodes": args.episodes,
                              "seed": args.seed, "version": version, "promoted": reg.baseline(KIND) == version,
                              "levels": {}}
    t = Table(title=f"missions, {proj.name}, {args.episodes} per planner, seeds {args.seed}..., the listed goals "
                    "in turn [proxy]", title_justify="left")
    for col in ("perturb", "scripted", "lora", "lora - scripted (paired)", "seconds"):
        t.add_column(col, justify="right")
    for level in (float(x) for x in args.levels.split(",")):
        t0 = time.perf_counter()
        opts = {"episodes": args.episodes, "seed": args.seed, "perturb": level}
        s = run_missions(proj, RunOptions(policy="scripted", **opts))
        lo_run = run_missions(proj, RunOptions(policy="lora", **opts), planner=planner)
        a, b = [e.success for e in lo_run.episodes], [e.success for e in s.episodes]
        tab = paired_table(a, b)
        dlo, dhi = paired_diff_interval(*tab)
        d = (sum(a) - sum(b)) / len(a)
        row = {"scripted": rate(sum(b), len(b)), "lora": rate(sum(a), len(a)), "paired_diff": d,
               "paired_ci95": [dlo, dhi], "table": tab, "logs": [str(s.log_path), str(lo_run.log_path)],
               "seconds": round(time.perf_counter() - t0, 1)}
        result["levels"][str(level)] = row
        f = lambda r: f"{r['rate']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"  # noqa: E731
        t.add_row(f"{level:g}", f(row["scripted"]), f(row["lora"]), f"{100 * d:+.1f} pts [{100 * dlo:+.1f}, "
                  f"{100 * dhi:+.1f}]", f"{row['seconds']:.0f}")
    con.print(t)
    # paraphrases never trained on, at perturbation 0, against the listed goals on the same sites
    listed = {o: g for g, o in proj.config.mission.objectives.items()}
    per = max(1, args.episodes // sum(len(v) for v in PARAPHRASES.values()))
    k_par = n_par = k_lst = n_lst = refused = 0
    for obj, texts in PARAPHRASES.items():
        for i, text in enumerate(texts):
            seed = args.seed + 10_000 + 100 * i
            par = run_missions(proj, RunOptions(policy="lora", goal=text, objective=obj, episodes=per, seed=seed),
                               planner=planner)
            lst = run_missions(proj, RunOptions(policy="lora", goal=listed[obj], episodes=per, seed=seed),
                               planner=planner)
            k_par, n_par = k_par + par.successes, n_par + len(par.episodes)
            k_lst, n_lst = k_lst + lst.successes, n_lst + len(lst.episodes)
            try:
                run_missions(proj, RunOptions(policy="scripted", goal=text, episodes=1, seed=seed))
            except CadenzaError:
                refused += 1
    ratio = (k_par / n_par) / (k_lst / n_lst) if k_lst else 0.0
    result["paraphrases"] = {"paraphrased": rate(k_par, n_par), "listed": rate(k_lst, n_lst), "ratio": ratio,
                             "scripted_refused": refused, "texts": sum(len(v) for v in PARAPHRASES.values())}
    t = Table(title="lora on goal paraphrases never trained on vs the listed goals (same sites, perturb 0)",
              title_justify="left")
    for col in ("goals", "lora success", "scripted"):
        t.add_column(col)
    texts = result["paraphrases"]["texts"]
    t.add_row("paraphrases", f"{k_par}/{n_par} = {k_par / n_par:.1%}", f"refuses {refused} of {texts}")
    t.add_row("listed goals", f"{k_lst}/{n_lst} = {k_lst / n_lst:.1%}", "")
    con.print(t)
    con.print(f"paraphrase / listed = {ratio:.2f} (goal >= 0.85); lora {version}; CPU {result['cpu']}")
    atomic_write_json(OUT, result)
    con.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
