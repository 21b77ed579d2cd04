"""``cadenza env run``, ``cadenza env finetune``, ``cadenza env train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli.common import ProjectArg, not_built


def run(
    project: ProjectArg,
    headless: Annotated[bool, typer.Option("--headless", help="Do not write the replay page.")] = False,
    policy: Annotated[str, typer.Option("--policy", help="Planner: scripted (offline, rule based), lora or llm.")] = "scripted",
    goal: Annotated[str | None, typer.Option("--goal", help="Goal text. [default: the project's goals in turn]", show_default=False)] = None,
    episodes: Annotated[int, typer.Option("--episodes", help="Number of missions to run.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the first mission.")] = 0,
    perturb: Annotated[float, typer.Option("--perturb", help="Perturbation level in [0, 1].")] = 0.0,
    controller: Annotated[str, typer.Option("--controller", help="Low-level controller: residual (base + promoted residual, or base alone) or student.")] = "residual",
) -> None:
    """Run missions and log every step to PROJECT/.cadenza-env/<run-id>.log.jsonl."""
    not_built("cadenza env run", 7)


def finetune(
    project: ProjectArg,
    logs: Annotated[list[Path], typer.Argument(help="One or more .log.jsonl files written by env run.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file (jsonl) or directory (lerobot).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="jsonl (prompt, action, reward records) or lerobot.")] = "jsonl",
    skip_bad_lines: Annotated[bool, typer.Option("--skip-bad-lines", help="Skip and count malformed log lines instead of failing.")] = False,
) -> None:
    """Export run logs as (prompt, action, reward) records for VLA fine-tuning."""
    not_built("cadenza env finetune", 7)


def train(
    project: ProjectArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the rewritten prompt without saving it.")] = False,
) -> None:
    """LLM-as-judge over the project's runs: rewrite SYSTEM_PROMPT.md to fix the failures it finds."""
    not_built("cadenza env train", 10)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("finetune")(finetune)
    app.command("train")(train)
