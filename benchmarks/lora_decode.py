"""Decode latency of the LoRA action head: one goal, CPU, after load (the ``env lora decode`` path).

Loads a project's head (the promoted one, else the latest: ``env lora finetune`` first) and times
``head.decode(goal)`` for goals the head has never been asked before (the per-text embedding cache is
cleared before every call, so each call runs MiniLM with its LoRA matrices and the plan decoder), and
the closed-loop call a mission makes at each decision (the goal's vector cached for the mission, a
live observation, one plan). Interleaved rounds; each call timed on its own. A third row times the
same goal call with MiniLM on eager torch instead of ONNX Runtime (what the head runs on at load),
so the two encoders are compared side by side in one run.

    .venv/bin/python benchmarks/lora_decode.py [PROJECT] [--threads 1] [--calls 200]

Writes ``benchmarks/results/lora_decode.json`` and prints a table. Goal: goal p50 <= 20 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cadenza.accel.hardware import cpu_name
from cadenza.governance.registry import Registry
from cadenza.lora.augment import paraphrases
from cadenza.lora.planner import KIND, load_version
from cadenza.mission.world import BodyState, Site, observe
from cadenza.project.config import load_project
from cadenza.utils.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "lora_decode.json"
GOAL_MS = 20.0
GOALS = ("search for the victim", "enter the debris field", "cross the rubble and climb onto the ledge",
         "reach the victim and sit beside them")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", nargs="?", default="examples/rescue-dog")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per variant (default 200)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    proj = load_project(args.project)
    reg = Registry(proj.root)
    version = reg.baseline(KIND) or reg.latest(KIND)
    if version is None:
        raise SystemExit(f"{proj.root} has no LoRA head; run `cadenza env lora finetune {proj.root}` first")
    t0 = time.perf_counter()
    head = load_version(proj, version)
    load_s = time.perf_counter() - t0
    texts = [t for g in GOALS for t in (g, *paraphrases(g, 50, 9))]
    site = Site.generate(2)
    obs = observe(site, BodyState(0.0, 0.0, site.start_yaw))
    for t in texts[:10]:  # warm-up
        head.decode(t, obs)
    runtime = getattr(head.encoder, "runtime", None)  # ONNX Runtime session (None: eager torch only)
    goal_ms: list[float] = []
    loop_ms: list[float] = []
    eager_ms: list[float] = []
    for i in range(args.calls):
        head.clear_cache()
        t = texts[i % len(texts)]
        a = time.perf_counter()
        d = head.decode(t)
        goal_ms.append(1000 * (time.perf_counter() - a))
        assert d.abstained or d.steps
        a = time.perf_counter()  # the same goal again with an observation: what a mission does per decision
        head.decode(t, obs)
        loop_ms.append(1000 * (time.perf_counter() - a))
        if runtime is not None:
            head.clear_cache()
            head.encoder.runtime = None
            a = time.perf_counter()
            head.decode(t)
            eager_ms.append(1000 * (time.perf_counter() - a))
            head.encoder.runtime = runtime
    encoder_runtime = "onnxruntime" if runtime is not None else "torch"
    rows: dict[str, Any] = {}
    timed = [(f"goal (encode + plan, no cache; {encoder_runtime})", goal_ms),
             ("mission decision (goal cached)", loop_ms)]
    if eager_ms:
        timed.append(("goal, MiniLM on eager torch (comparison)", eager_ms))
    for name, xs in timed:
        rows[name] = {"p50_ms": round(pct(xs, 0.5), 3), "p99_ms": round(pct(xs, 0.99), 3),
                      "mean_ms": round(statistics.fmean(xs), 3), "calls": len(xs)}
    result = {"project": str(proj.root), "version": version, "encoder": head.metadata()["encoder"]["name"],
              "rank": head.rank, "threads": args.threads, "cpu": cpu_name(), "machine": platform.machine(),
              "torch": torch.__version__, "load_s": round(load_s, 2), "goal_ms": GOAL_MS, "rows": rows,
              "encoder_runtime": encoder_runtime, "goal_met": rows[timed[0][0]]["p50_ms"] <= GOAL_MS}
    atomic_write_json(OUT, result)
    t = Table(title=f"LoRA head decode latency: {proj.name} lora {version}, {result['encoder']}, rank {head.rank}, "
                    f"CPU {result['cpu']}, {args.threads} thread(s), after load ({load_s:.1f} s)", title_justify="left")
    for col in ("call", "p50", "p99", "mean", "calls"):
        t.add_column(col, justify="left" if col == "call" else "right")
    for name, r in rows.items():
        t.add_row(name, f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms", f"{r['mean_ms']:.2f} ms", str(r["calls"]))
    Console().print(t)
    met = "met" if result["goal_met"] else "NOT met"
    Console().print(f"goal p50 <= {GOAL_MS:g} ms: {met}; wrote {OUT}")


if __name__ == "__main__":
    main()
