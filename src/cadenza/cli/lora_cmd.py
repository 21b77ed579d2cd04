"""``cadenza env lora add|data|finetune|eval|decode``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli import preflight
from cadenza.cli.common import ProjectArg, checked, existing_file, locked, not_built, number_check, text_check

app = typer.Typer(rich_markup_mode="markdown",
                  help="The LoRA action head: examples, fine-tuning, governance, decoding.", no_args_is_help=True)


@app.command("add")
@locked("env lora add", check=preflight.nothing)
def add(
    project: ProjectArg,
    goal: Annotated[str, typer.Argument(callback=text_check(), help="The goal text, e.g. \"enter the debris field\".",
                                        show_default=False)],
    steps: Annotated[str, typer.Option("--steps", callback=text_check(),
                                       help="Action steps, comma separated: 'walk_forward 1.0, crawl_forward 0.5'.",
                                       show_default=False)],
    image: Annotated[Path | None, typer.Option("--image", callback=existing_file,
                                               help="Optional visual context for the example.")] = None,
) -> None:
    """Add a goal -> action-steps training example."""
    not_built("cadenza env lora add", "lora")


@app.command("data")
@checked(preflight.nothing)
def data(
    project: ProjectArg,
    finetune: Annotated[Path | None, typer.Option("--finetune", help="Also show records from a finetune export.",
                                                  callback=existing_file)] = None,
) -> None:
    """Show the current training dataset."""
    not_built("cadenza env lora data", "lora")


@app.command("finetune")
@locked("env lora finetune", check=preflight.nothing)
def finetune(
    project: ProjectArg,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.",
                                        callback=number_check(ge=1, le=100_000))] = 5,
    lr: Annotated[float, typer.Option("--lr", callback=number_check(gt=0.0, le=10.0), help="Learning rate.")] = 2e-4,
    rank: Annotated[int, typer.Option("--rank", callback=number_check(ge=1, le=1024), help="LoRA rank.")] = 8,
    gate: Annotated[bool, typer.Option("--gate",
                                       help="Run the scorecard afterwards and promote or roll back.")] = False,
) -> None:
    """Generate goal -> action data and fine-tune the adapter."""
    not_built("cadenza env lora finetune", "lora")


@app.command("eval")
@locked("env lora eval", check=preflight.nothing)
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote", help="Deploy the adapter if it passes.")] = False,
) -> None:
    """Run the governance scorecard on the trained adapter."""
    not_built("cadenza env lora eval", "lora")


@app.command("decode")
@checked(preflight.nothing)
def decode(
    project: ProjectArg,
    goal: Annotated[str, typer.Argument(callback=text_check(), help="The goal to decode into action steps.",
                                        show_default=False)],
) -> None:
    """Decode a goal into action steps with the trained adapter."""
    not_built("cadenza env lora decode", "lora")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="lora")
