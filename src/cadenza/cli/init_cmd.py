"""``cadenza init``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli.common import choice_check, console, directory_arg, locked


def _directory(value: Path) -> Path:
    try:
        bad = value.exists() and not value.is_dir()
    except (OSError, ValueError) as e:
        raise typer.BadParameter(f"cannot use {str(value)[:80]!r} ({getattr(e, 'strerror', None) or e})") from None
    if bad:
        raise typer.BadParameter(f"{value}: exists and is not a directory")
    return value


def _name(value: str | None) -> str | None:
    """The same rule as ``[project].name`` in cadenza.toml."""
    if value is not None and not (len(value) <= 100 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value)):
        raise typer.BadParameter(f"expected a valid project.name: 1-100 characters, a letter or digit, then "
                                 f"letters, digits, '_', '.', '-' (got {value[:80]!r})")
    return value


@locked("init --force", project_param="directory", when=lambda p: bool(p.get("force")))
def init(
    directory: Annotated[Path, typer.Argument(parser=directory_arg, callback=_directory,
                                              help="Directory to create the project in.", show_default=False)],
    template: Annotated[str, typer.Option(callback=choice_check("rescue-dog"),
                                          help="Project template.")] = "rescue-dog",
    name: Annotated[str | None, typer.Option(callback=_name,
                                             help="Project name (default: the directory name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing cadenza.toml.")] = False,
) -> None:
    """Create a project: cadenza.toml and SYSTEM_PROMPT.md from a template."""
    from cadenza.project.scaffold import init_project

    for p in init_project(directory, template=template, name=name, force=force):
        console.print(f"wrote {p}")
    console.print(f"next: cadenza env residual init {directory}")


def register(parent: typer.Typer) -> None:
    parent.command("init", help=init.__doc__)(init)
