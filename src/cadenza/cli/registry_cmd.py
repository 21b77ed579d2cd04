"""``cadenza env history`` and ``cadenza env rollback``."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza.cli.common import ProjectArg, not_built


def history(
    project: ProjectArg,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind: residual, student, lora or prompt.")] = None,
) -> None:
    """List every artefact version, verdict and baseline move of the project."""
    not_built("cadenza env history", 3)


def rollback(
    project: ProjectArg,
    kind: Annotated[str, typer.Argument(help="residual, student, lora or prompt.", show_default=False)],
    to: Annotated[str | None, typer.Option("--to", help="Version to restore. [default: the previous baseline]", show_default=False)] = None,
) -> None:
    """Move the baseline of KIND back to an earlier version."""
    not_built("cadenza env rollback", 3)


def register(app: typer.Typer) -> None:
    app.command("history")(history)
    app.command("rollback")(rollback)
