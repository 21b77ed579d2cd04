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
    number_check,
    text_check,
)
from cadenza.cli.llm_opts import BaseUrlOpt, KeyEnvOpt, ModelOpt, NoCacheOpt, RetriesOpt, TimeoutOpt, llm_settings


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
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    retries: RetriesOpt = None,
    api_key_env: KeyEnvOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run missions and log every step to PROJECT/.cadenza-env/RUN-ID.log.jsonl (a replay image too, unless --headless)."""  # noqa: E501 (the help text)
    from rich.markup import escape
    from rich.table import Table

    from cadenza.mission.runner import EpisodeResult, RunOptions, run_missions, success_interval
    from cadenza.project.config import load_project

    proj = load_project(project)
    opts = RunOptions(policy=policy, goal=goal, episodes=episodes, seed=seed, perturb=perturb, controller=controller)
    planner = None
    if policy == "llm":  # the [llm] flags apply to this planner only
        from cadenza.llm.planner import make_llm_planner
        from cadenza.mission.runner import mission_vocabulary

        settings = llm_settings(proj, model=model, base_url=base_url, timeout=timeout, retries=retries,
                                api_key_env=api_key_env)
        planner = make_llm_planner(proj, mission_vocabulary(proj)[0], settings=settings, use_cache=not no_cache)
    elif policy == "lora":  # registers the lora planner (the promoted head, loaded by make_planner)
        import cadenza.lora.planner  # noqa: F401

    def progress(ep: EpisodeResult) -> None:
        if episodes > 1:
            err_console.print(f"  mission {ep.episode + 1}/{episodes}: {'success' if ep.success else ep.reason}",
                              markup=False)

    result = run_missions(proj, opts, on_episode=progress, planner=planner)
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
    if planner is not None:
        t = planner.totals()
        console.print(f"llm {t['model']} at {t['base_url']}: {t['decisions']} decisions, {t['client']['requests']} "
                      f"requests, {t['client']['cache_hits']} cache hits, {t['repairs']} repairs, {t['fallbacks']} "
                      f"safe-stop fallbacks", markup=False, soft_wrap=True)
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


@locked("env train", check=preflight.registry)
def train(
    project: ProjectArg,
    runs: Annotated[int | None, typer.Option("--runs", callback=number_check(ge=1, le=100_000), show_default=False,
                                             help="Read the newest N run logs. [default: all of them]")] = None,
    model: ModelOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="The local judge (deterministic rules mined from the "
                                                            "logs; no key, no request). Also used when no key is "
                                                            "set.")] = False,
    budget: Annotated[int | None, typer.Option("--budget", callback=number_check(ge=1, le=10_000_000),
                                               show_default=False,
                                               help="Most LLM requests (judge and --policy llm missions); a budget "
                                                    "too small for one candidate is refused before any request. "
                                                    "[default: no limit]")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the failure modes and the rewritten prompt; fly "
                                                            "no mission, save nothing.")] = False,
    policy: Annotated[str | None, typer.Option("--policy", callback=choice_check("scripted", "llm"),
                                               show_default=False,
                                               help="Planner that flies the evaluation missions. [default: the one "
                                                    "most of the runs used, scripted unless llm]")] = None,
    screen: Annotated[int, typer.Option("--screen", callback=number_check(ge=1, le=10_000),
                                        help="Screening minibatch: missions the judge read, flown by every "
                                             "candidate.")] = 50,
    validation: Annotated[int, typer.Option("--validation", callback=number_check(ge=1, le=100_000),
                                            help="Validation missions (fixed seeds never read by the judge), "
                                                 "flown by the incumbent and the candidate.")] = 100,
    perturb: Annotated[float | None, typer.Option("--perturb", callback=number_check(ge=0.0, le=1.0),
                                                  show_default=False,
                                                  help="Perturbation level of the evaluation missions. [default: "
                                                       "the runs' most common level]")] = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    retries: RetriesOpt = None,
    api_key_env: KeyEnvOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Rewrite SYSTEM_PROMPT.md from the runs: a judge proposes, missions decide (exit 0 DEPLOY or nothing to do, 3
    BLOCK, 4 NEEDS_DATA)."""
    from cadenza.cli.prompt_train_view import run_train
    from cadenza.project.config import load_project

    proj = load_project(project)
    settings = llm_settings(proj, model=model, base_url=base_url, timeout=timeout, retries=retries,
                            api_key_env=api_key_env)
    raise typer.Exit(run_train(proj, settings, runs=runs, offline=offline, budget=budget, dry_run=dry_run,
                               policy=policy, screen=screen, validation=validation, perturb=perturb,
                               use_cache=not no_cache))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("finetune")(finetune)
    app.command("train")(train)
