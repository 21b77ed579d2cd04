"""``cadenza env history`` and ``cadenza env rollback``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cadenza.cli import preflight
from cadenza.cli.common import ProjectArg, checked, choice_check, console, locked, version_check

KIND_CHECK = choice_check("residual", "student", "lora", "prompt")  # = governance.registry.KINDS


@checked(preflight.registry)
def history(
    project: ProjectArg,
    kind: Annotated[str | None, typer.Option("--kind", callback=KIND_CHECK,
                                             help="Only this kind: residual, student, lora or prompt.")] = None,
) -> None:
    """List every artefact version, verdict and baseline move of the project."""
    from cadenza.governance.registry import KINDS, open_registry
    from cadenza.project.config import load_project

    proj = load_project(project)
    reg = open_registry(proj)
    kinds = [kind] if kind else list(KINDS)
    for k in kinds:
        reg.check_kind(k)
    rows = reg.ledger(kind)
    t = Table(title=f"registry of {proj.name}", title_justify="left")
    for col in ("time", "kind", "version", "event", "evidence", "verdict / detail"):
        t.add_column(col)
    for e in rows:
        evidence = ""
        if e.get("block") is not None:
            evidence = f"block {e['block']}, {e.get('episodes', '?')} episodes"
            if (e.get("looks") or 1) > 1:
                evidence += f" ({e['looks']} looks)"
        elif e.get("seeds"):  # a prompt's validation missions
            evidence = f"seeds {e['seeds'][0]}-{e['seeds'][-1]}, {e.get('episodes', '?')} missions"
        if e["event"] == "verdict":
            detail = f"{e['verdict']}: {e.get('action', '')}"
        elif e["event"] == "preview":
            detail = f"{e['verdict']} (preview, not recorded as a verdict)"
        elif e["event"] in ("promote", "rollback"):
            detail = f"baseline {e.get('from') or '-'} -> {e['version']}"
        else:
            shown = ("task", "env_steps", "stop_reason", "imported_from", "judge", "origin")
            meta = e.get("metadata") or {}
            detail = ", ".join(f"{k}={v}" for k, v in meta.items() if k in shown and v is not None)
            if meta.get("rules"):  # a prompt version's rules
                detail += "; rules " + ", ".join(f"{r['key']}={r['value']:g}" for r in meta["rules"])
        t.add_row(e["time"], e["kind"], e["version"], e["event"], evidence, detail)
    console.print(t)
    for k in kinds:
        console.print(f"{k:9s} baseline: {reg.baseline(k) or '-'}   versions: {len(reg.versions(k))}")


@locked("env rollback", check=preflight.registry)
def rollback(
    project: ProjectArg,
    kind: Annotated[str, typer.Argument(callback=KIND_CHECK, help="residual, student, lora or prompt.",
                                        show_default=False)],
    to: Annotated[str | None, typer.Option("--to", callback=version_check,
                                           help="Version to restore. [default: the previous baseline]",
                                           show_default=False)] = None,
) -> None:
    """Move the baseline of KIND back to an earlier version (its files are re-published)."""
    from cadenza.governance.registry import open_registry
    from cadenza.project.config import load_project

    proj = load_project(project)
    reg = open_registry(proj)
    reg.check_kind(kind)
    before = reg.baseline(kind)
    after = reg.rollback(kind, to)
    console.print(f"{kind} baseline: {before or '-'} -> {after}")


def register(app: typer.Typer) -> None:
    app.command("history")(history)
    app.command("rollback")(rollback)
