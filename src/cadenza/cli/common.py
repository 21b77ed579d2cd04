"""Shared CLI pieces: the console, option types, the default-command group, verdict exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from cadenza.errors import NotBuiltError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Exit codes a CI pipeline can gate on (docs/cli.md).
EXIT_DEPLOY, EXIT_ERROR, EXIT_USAGE, EXIT_BLOCK, EXIT_NEEDS_DATA = 0, 1, 2, 3, 4
VERDICT_EXIT = {"DEPLOY": EXIT_DEPLOY, "BLOCK": EXIT_BLOCK, "NEEDS_DATA": EXIT_NEEDS_DATA}

ProjectArg = Annotated[Path, typer.Argument(help="Project directory (holds cadenza.toml).", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: auto (cuda -> mps -> cpu), cuda, mps or cpu.")]
RealOpt = Annotated[bool, typer.Option("--real", help="Run on the real simulator (MuJoCo) named in [task.real].")]


def not_built(what: str, issue: int) -> None:
    raise NotBuiltError(f"{what} is not built yet (tracked in issue {issue})")


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, str(v))
    return t


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``default_command`` when its first argument is not a sub-command.

    ``cadenza env distill PROJECT`` runs the default (distill) while ``cadenza env distill eval
    PROJECT`` runs ``eval``.
    """

    default_command = "build"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        cmd = self.commands.get(self.default_command)
        if cmd is None:
            return
        with type(ctx)(cmd, info_name=ctx.info_name, parent=ctx.parent) as sub:  # typer may vendor click
            formatter.write_paragraph()
            formatter.write_text(f"Running `{ctx.command_path} PROJECT [OPTIONS]` (no sub-command):")
            cmd.format_help_text(sub, formatter)
            cmd.format_options(sub, formatter)
