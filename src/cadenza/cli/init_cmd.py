"""``cadenza init``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli.common import console


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the project in.", show_default=False)],
    template: Annotated[str, typer.Option(help="Project template.")] = "rescue-dog",
    name: Annotated[str | None, typer.Option(help="Project name (default: the directory name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing cadenza.toml.")] = False,
) -> None:
    """Create a project: cadenza.toml and SYSTEM_PROMPT.md from a template."""
    from cadenza.project.scaffold import init_project

    for p in init_project(directory, template=template, name=name, force=force):
        console.print(f"wrote {p}")
    console.print(f"next: cadenza env residual init {directory}")
