"""Prompt training acceptance: `env train --offline` on a copy of examples/rescue-dog after 50 runs at perturb 1.0.

    .venv/bin/python benchmarks/prompt_train.py                 # 50 missions, then env train (default settings)
    .venv/bin/python benchmarks/prompt_train.py --project DIR   # collect an existing project's results only

Runs the commands a user would (the CLI, in subprocesses): ``cadenza env run COPY --headless --episodes
50 --perturb 1.0`` (base alone: the example has no residual), ``cadenza env train COPY --offline``, a
second ``env train`` (nothing new to fix), ``env history``, and ``env rollback COPY prompt`` (checking
the original bytes come back) when a version was promoted. The before/after validation numbers, the
paired interval and the rules come from the registry (kind ``prompt``). Results go to
benchmarks/results/prompt_train.json; everything is labelled ``proxy`` and ``offline``.
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

from cadenza.accel.hardware import cpu_name
from cadenza.governance.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "rescue-dog"
CLI = [sys.executable, "-m", "cadenza.cli.main"]


def cadenza(*args: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "GROQ_API_KEY"}  # offline: no key in reach
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env)
    return {"argv": ["cadenza", *args], "exit": p.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "stdout": p.stdout, "stderr": p.stderr}


def collect(project: Path) -> dict[str, Any]:
    reg = Registry(project)
    out: dict[str, Any] = {"versions": {}, "baseline": reg.baseline("prompt")}
    for v in reg.versions("prompt"):
        meta = reg.manifest("prompt", v)["metadata"]
        out["versions"][v] = {k: meta.get(k) for k in ("origin", "judge", "rules", "fixes", "perturb", "policy",
                                                        "screen", "validation", "logs")}
        verdict = reg.last_verdict("prompt", v)
        if verdict:
            out["versions"][v]["verdict"] = verdict["verdict"]
            out["versions"][v]["action"] = verdict["action"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, help="collect an existing project instead of running")
    ap.add_argument("--missions", type=int, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prompt_train.json")
    a = ap.parse_args()
    steps: list[dict[str, Any]] = []
    if a.project is None:
        project = Path(tempfile.mkdtemp(prefix="cadenza-prompt-train-")) / "rescue-dog"
        shutil.copytree(EXAMPLE, project)
        original = (project / "SYSTEM_PROMPT.md").read_bytes()
        steps.append(cadenza("env", "run", str(project), "--headless", "--episodes", str(a.missions),
                             "--perturb", "1.0"))
        steps.append(cadenza("env", "train", str(project), "--offline"))
        steps.append(cadenza("env", "train", str(project), "--offline"))  # the same runs again: nothing new
        steps.append(cadenza("env", "history", str(project), "--kind", "prompt"))
        results = collect(project)
        if results["baseline"] not in (None, "v0001"):
            after = (project / "SYSTEM_PROMPT.md").read_bytes()
            steps.append(cadenza("env", "rollback", str(project), "prompt"))
            results["rollback_restores_original_bytes"] = (project / "SYSTEM_PROMPT.md").read_bytes() == original
            results["promoted_prompt"] = after.decode("utf-8")
    else:
        project = a.project
        results = collect(project)
    for s in steps:
        print(f"$ {' '.join(s['argv'])}  -> exit {s['exit']} in {s['seconds']} s", flush=True)
        print(s["stdout"][-3000:], s["stderr"][-1500:], sep="\n")
    doc = {"task": "proxy", "judge": "offline", "cpu": cpu_name(), "project": str(project),
           "commands": [{k: v for k, v in s.items() if k not in ("stdout", "stderr")} for s in steps],
           "train_report": steps[1]["stdout"] if len(steps) > 1 else None, **results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
