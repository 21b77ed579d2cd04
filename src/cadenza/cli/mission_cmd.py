"""``cadenza env run``, ``cadenza env finetune``, ``cadenza env train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli import preflight
from cadenza.cli.common import (
    SEED_CHECK,
    ProjectArg,
    choice_check,
    console,
    err_console,
    existing_file,
    locked,
    not_built,
    number_check,
    text_check,
)


@locked("env run", check=preflight.run)
def run(
    project: ProjectArg,
    headless: Annotated[bool, typer.Option("--headless",
                                           help="Do not draw the replay image (the log is always written).")] = False,
    policy: Annotated[str, typer.Option("--policy", callback=choice_check("scripted", "lora", "llm"),
                                        help="Planner: scripted (offline, rule based), lora or llm.")] = "scripted",
    goal: Annotated[str | None, typer.Option("--goal", callback=text_check(),
                                             help="Goal text for every mission. [default: the project's mission.goals "
                                                  "in turn]", show_default=False)] = None,
    episodes: Annotated[int, typer.Option("--episodes", callback=number_check(ge=1, le=1_000_000),
                                          help="Number of missions to run.")] = 1,
    seed: Annotated[int, typer.Option("--seed", callback=SEED_CHECK,
                                      help="Seed of the first mission (mission i uses seed + i).")] = 0,
    perturb: Annotated[float, typer.Option("--perturb", callback=number_check(ge=0.0, le=1.0),
                                           help="Perturbation level of the robot's dynamics in [0, 1].")] = 0.0,
    controller: Annotated[str, typer.Option("--controller", callback=choice_check("residual", "student"),
                                            help="Low-level controller: residual (base + promoted residual, or base "
                                                 "alone) or student.")] = "residual",
) -> None:
    """Run missions and log every step to PROJECT/.cadenza-env/RUN-ID.log.jsonl (a replay image too, unless --headless)."""  # noqa: E501 (the help text)
    from rich.markup import escape
    from rich.table import Table

    from cadenza.mission.runner import EpisodeResult, RunOptions, run_missions, success_interval
    from cadenza.project.config import load_project

    proj = load_project(project)
    opts = RunOptions(policy=policy, goal=goal, episodes=episodes, seed=seed, perturb=perturb, controller=controller)

    def progress(ep: EpisodeResult) -> None:
        if episodes > 1:
            err_console.print(f"  mission {ep.episode + 1}/{episodes}: {'success' if ep.success else ep.reason}",
                              markup=False)

    result = run_missions(proj, opts, on_episode=progress)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    h = result.header
    ctrl = h["controller"]
    ctrl_label = ctrl["kind"] + (f" {ctrl['version']}" if ctrl.get("version") else "")
    table = Table(title=f"env run {result.run_id}  \\[{h['task']}]  policy {h['policy']}, controller {ctrl_label}, "
                        f"perturb {perturb}", title_justify="left")
    for col, just in (("mission", "right"), ("seed", "right"), ("goal", "left"), ("steps", "right"),
                      ("return", "right"), ("result", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for ep in result.episodes:
        table.add_row(str(ep.episode), str(ep.seed), escape(ep.goal), str(ep.steps), f"{ep.ret:+.2f}",
                      "[green]success[/green]" if ep.success else f"[red]{escape(ep.reason)}[/red]")
    console.print(table)
    k, n = result.successes, len(result.episodes)
    lo, hi = success_interval(k, n)
    console.print(f"success {k}/{n} = {100 * k / n:.0f}%  (95% Wilson CI {100 * lo:.0f}-{100 * hi:.0f}%)  "
                  f"\\[{h['task']}, perturb {perturb}, controller {ctrl_label}]", soft_wrap=True)
    console.print(f"log: {result.log_path}", markup=False, soft_wrap=True)
    if not headless:
        from cadenza.mission.replay import render_replay

        out = render_replay(result.log_path, result.log_path.with_name(f"{result.run_id}.replay.png"))
        console.print(f"replay: {out}", markup=False, soft_wrap=True)


@locked("env finetune", check=preflight.finetune, when=preflight.writes_inside("project", "output"))
def finetune(
    project: ProjectArg,
    logs: Annotated[list[Path], typer.Argument(callback=existing_file,
                                               help="One or more .log.jsonl files written by env run.",
                                               show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file (jsonl) or directory (lerobot).",
                                         show_default=False)],
    fmt: Annotated[str, typer.Option("--format", callback=choice_check("jsonl", "lerobot"),
                                     help="jsonl (prompt, action, reward records) or lerobot (LeRobot-style dataset "
                                          "directory).")] = "jsonl",
    skip_bad_lines: Annotated[bool, typer.Option(
        "--skip-bad-lines", help="Skip and count malformed log lines instead of failing.")] = False,
) -> None:
    """Export run logs as (prompt, action, reward) records for VLA fine-tuning."""
    from cadenza.mission.finetune import export
    from cadenza.project.config import load_project

    proj = load_project(project)
    res = export(proj, list(logs), output, fmt=fmt, skip_bad_lines=skip_bad_lines)
    console.print(f"wrote {res.records} records ({res.episodes} missions from {res.logs} log(s)) to {res.output}",
                  markup=False, soft_wrap=True)
    if res.skipped:
        where = ", ".join(f"{p}:{n}" for p, lines in res.bad_lines.items() for n in lines[:5])
        console.print(f"skipped {res.skipped} bad line(s): {where}{' ...' if res.skipped > 5 else ''}", markup=False,
                      soft_wrap=True)


@locked("env train", check=preflight.nothing)
def train(
    project: ProjectArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the rewritten prompt without saving it.")] = False,
) -> None:
    """LLM-as-judge over the project's runs: rewrite SYSTEM_PROMPT.md to fix the failures it finds."""
    not_built("cadenza env train", "prompt-train")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("finetune")(finetune)
    app.command("train")(train)
