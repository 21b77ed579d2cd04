"""``cadenza env residual init|train|eval|bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cadenza.cli import preflight
from cadenza.cli.common import (
    EPISODES_CHECK,
    SEED_CHECK,
    STEPS_CHECK,
    BackendOpt,
    DeviceOpt,
    HeldoutBlockOpt,
    MaxEpisodesOpt,
    ProjectArg,
    RayAddressOpt,
    RealOpt,
    RolloutWorkersOpt,
    TrackOpt,
    choice_check,
    command_tracker,
    console,
    existing_file,
    kv_table,
    locked,
    number_check,
    version_check,
)

app = typer.Typer(rich_markup_mode="markdown",
                  help="The residual stack: scaffold and profile, governed training, governance, bench.",
                  no_args_is_help=True)


@app.command("init")
@locked("env residual init", check=preflight.residual_init)
def init(
    project: ProjectArg,
    hidden_dim: Annotated[int | None, typer.Option("--hidden-dim", callback=number_check(ge=4, le=8192),
        help="Residual MLP hidden width. [default: 256, from cadenza.toml]", show_default=False)] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", callback=number_check(gt=0.0, le=1.0),
                                                help="Action scale: how hard the residual may nudge the base. "
                                                     "[default: 0.15, from cadenza.toml]", show_default=False)] = None,
    obs_dim: Annotated[int | None, typer.Option("--obs-dim", callback=number_check(ge=1, le=1_000_000),
                                                help="Observation width. [default: probed from the task/base]",
                                                show_default=False)] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit", callback=number_check(gt=0.0, le=2.0),
                                                     help="Largest per-step change of the residual output. [default: "
                                                          "0.5, from cadenza.toml]", show_default=False)] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate",
                                          help="Drop the gate term: a = clamp(a_base + alpha * delta).")] = False,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
) -> None:
    """Fix the residual architecture and dry-run profile it (params, latency, memory). No training."""
    from cadenza.project.config import load_project

    proj = load_project(project)  # a bad cadenza.toml fails here, before torch is imported
    from cadenza.residual.scaffold import init_residual, spec_path

    spec = init_residual(proj, hidden_dim=hidden_dim, alpha=alpha, obs_dim=obs_dim, rate_limit=rate_limit,
                         gate=False if no_gate else None, device=device, real=real)
    a, p = spec["architecture"], spec["profile"]
    console.print(kv_table(f"residual head  \\[{spec['task']}]", [
        ("input", f"obs {a['obs_dim']} + base action {a['act_dim']} = {a['obs_dim'] + a['act_dim']}"),
        ("hidden", f"{a['layers']} x {a['hidden_dim']} (tanh)"),
        ("output", f"delta {a['act_dim']}" + (" + gate 1" if a["gate"] else " (no gate)")),
        ("alpha / rate limit", f"{a['alpha']} / {a['rate_limit']}"),
        ("parameters", f"{p['params']:,}"),
        ("latency p50 / p99", f"{p['latency_p50_us']:.1f} / {p['latency_p99_us']:.1f} us (1 obs, {spec['device']})"),
        ("throughput", f"{p['throughput_obs_per_s']:,.0f} obs/s (batch {p['batch']})"),
        ("peak memory", f"{p['peak_memory_bytes'] / 1e6:.2f} MB"),
        ("device", spec["device"]),
    ]))
    console.print(f"wrote {spec_path(proj, real)}")


def print_scorecard(card, action: str | None = None) -> None:
    """The scorecard table and the verdict with its reasons, one line each."""
    from rich.table import Table

    where = f", held-out block {card.block}" if card.block is not None else ""
    looks = f", {len(card.looks)} looks" if len(card.looks) > 1 else ""
    conf = card.confidence or 0.95
    t = Table(title=f"scorecard \\[{card.task}], {card.episodes} episodes per policy ({card.env_steps:,} env steps "
                    f"in all){where}{looks}",
              title_justify="left")
    for col in ("policy", "success", f"{conf:.1%} interval", "collision", "return", "mean |delta|", "clamped"):
        t.add_column(col, justify="right" if col != "policy" else "left")
    from cadenza.governance.stats import wilson

    for m in card.metrics.values():
        lo, hi = wilson(m["successes"], m["episodes"], conf)
        t.add_row(m["label"], f"{m['success_rate']:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{m['collision_rate']:.1%}",
                  f"{m['mean_return']:+.3f}", f"{m['mean_abs_delta']:.3f}", f"{m['clamp_share']:.1%}")
    console.print(t)
    style = {"DEPLOY": "bold green", "BLOCK": "bold red", "NEEDS_DATA": "bold yellow"}[card.verdict]
    console.print(f"verdict: [{style}]{card.verdict}[/{style}]")
    for r in card.reasons:
        console.print(f"  {r}", soft_wrap=True)
    if action:
        console.print(f"registry: {action}")


@app.command("train")
@locked("env residual train", check=preflight.residual_train)
def train(
    project: ProjectArg,
    steps: Annotated[int | None, typer.Option("--steps", callback=STEPS_CHECK, show_default=False,
        help="Env-step budget. [default: residual.steps in cadenza.toml]")] = None,
    seed: Annotated[int | None, typer.Option("--seed", callback=SEED_CHECK, show_default=False,
                                             help="Random seed. [default: residual.seed in cadenza.toml]")] = None,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
    fresh: Annotated[bool, typer.Option("--fresh",
                                        help="Ignore an interrupted run's checkpoint and start over.")] = False,
    backend: BackendOpt = None,
    ray_address: RayAddressOpt = None,
    rollout_workers: RolloutWorkersOpt = None,
    track: TrackOpt = None,
) -> None:
    """Governed PPO (or SAC: [residual] algorithm) on the frozen base; DEPLOY promotes the new residual, BLOCK
    keeps the old one.

    Exit code: 0 DEPLOY, 3 BLOCK, 4 NEEDS_DATA. Ctrl-C keeps the last round's checkpoint; re-running resumes.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cadenza.cli.common import VERDICT_EXIT
    from cadenza.project.config import load_project
    from cadenza.residual.train import train_residual
    from cadenza.scale.backend import resolve_scale

    proj = load_project(project)
    scale = resolve_scale(proj.config.scale, backend, ray_address, rollout_workers)
    if scale.rollout_note():
        console.print(scale.rollout_note(), soft_wrap=True)
    with Progress(TextColumn("[bold]train[/bold] round {task.fields[round]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
        job = bar.add_task("train", total=None, round=0, info="")

        def on_round(row: dict, plan) -> None:
            sr = "  n/a" if row["episodes"] == 0 else f"{row['success_rate']:5.1%}"
            ret = "n/a" if row["episodes"] == 0 else f"{row['mean_return']:+.2f}"
            val = (f"  val {row['val_success']:.1%} / {row['val_collision']:.1%} coll, margin {row['val_margin']:+.1%}"
                   if "val_margin" in row else "")
            learner = f"KL {row['approx_kl']:.4f}" if plan.algorithm == "ppo" else f"Q loss {row['value_loss']:.3f}"
            bar.update(job, total=plan.budget_steps, completed=min(row["env_steps_total"], plan.budget_steps),
                       round=row["round"], info=f"level {row['level']:.2f}  success {sr}  return {ret}  "
                       f"{learner}{val}")

        def on_stage(text: str) -> None:
            bar.console.print(text, soft_wrap=True)

        try:
            with command_tracker(proj, "train", track, bar.console) as tr:
                res = train_residual(proj, steps=steps, seed=seed, device=device, real=real, fresh=fresh,
                                     on_round=on_round, on_stage=on_stage, scale=scale, tracker=tr)
        except KeyboardInterrupt:
            bar.stop()
            console.print("interrupted: the last finished round is checkpointed; run the same command to resume")
            raise typer.Exit(130) from None
    if res.resumed_from:
        console.print(f"resumed from round {res.resumed_from}")
    console.print(f"stopped: {res.stop_reason}  ({res.env_steps:,} env steps, {res.wall_s:.1f} s)", soft_wrap=True)
    if res.best_env_steps != res.env_steps:
        console.print(f"kept round {res.best_round} ({res.best_env_steps:,} env steps): the best validation card")
    console.print(f"evaluation outside the training budget: {res.validation_env_steps:,} env steps of validation "
                  f"cards ({res.validation_wall_s:.1f} s of the {res.wall_s:.1f} s), {res.scorecard_env_steps:,} of "
                  "scorecard", soft_wrap=True)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    print_scorecard(res.card, res.action)
    console.print(f"report: {res.report_path}\ncurve:  {res.curve_path}")
    raise typer.Exit(VERDICT_EXIT[res.card.verdict])


@app.command("eval")
@locked("env residual eval", check=preflight.residual_eval)
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote", help="Set the residual as the baseline if it passes.")] = False,
    episodes: Annotated[int | None, typer.Option("--episodes", callback=EPISODES_CHECK,
                                                 help="Evaluation episodes. [default: governance.eval_episodes]",
                                                 show_default=False)] = None,
    version: Annotated[str | None, typer.Option("--version", callback=version_check,
                                                help="Registry version to score. [default: the newest]",
                                                show_default=False)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", callback=existing_file,
                                                help="Score this residual policy file (it is registered first).",
                                                show_default=False)] = None,
    real: RealOpt = False,
    max_episodes: MaxEpisodesOpt = None,
    seed: HeldoutBlockOpt = None,
    ab: Annotated[bool, typer.Option("--ab",
                                     help="A/B through the safe runtime instead: switch the residual on and off by "
                                          "episode and report both success rates with intervals (--episodes per arm; "
                                          "no verdict, baseline unchanged). [default: off]",
                                          show_default=False)] = False,
) -> None:
    """Re-score a residual: success / collision / sanity / regression -> DEPLOY | BLOCK | NEEDS_DATA.

    Exit code: 0 DEPLOY, 3 BLOCK, 4 NEEDS_DATA (with --ab: 0).
    """
    from cadenza.base.loader import load_base
    from cadenza.cli.common import VERDICT_EXIT
    from cadenza.errors import CadenzaError
    from cadenza.governance.registry import open_registry
    from cadenza.project.config import load_project
    from cadenza.residual.policy import ResidualController, load_policy
    from cadenza.residual.scoring import apply_verdict, score_residual
    from cadenza.tasks.factory import base_source

    proj = load_project(project)
    if ab and promote:
        raise CadenzaError("--ab compares residual on/off and gives no verdict; drop --promote (or --ab)")
    reg = open_registry(proj)
    if policy is not None:
        load_policy(policy)  # refuse a bad file before it enters the registry
        version = reg.register("residual", {"policy.pt": policy}, {"imported_from": str(policy)})
        console.print(f"registered {policy} as residual {version}")
    version = version or reg.latest("residual")
    if version is None:
        raise CadenzaError(f"{proj.root}: no residual trained yet; run: cadenza env residual train {proj.root}")
    actor, _ = load_policy(reg.path("residual", version, "policy.pt"))
    base = load_base(base_source(proj, real), proj.root, actor.arch.act_dim)
    n = episodes or proj.config.governance.eval_episodes
    if ab:
        from cadenza.cli.runtime_view import print_ab
        from cadenza.runtime.project import ab_for_project

        result, _, path = ab_for_project(proj, actor, base, episodes_per_arm=n, real=real, version=version)
        console.print(f"residual {version}")
        print_ab(result)
        console.print(f"report: {path}")
        return
    block = reg.next_block("residual", version) if seed is None else seed
    reused = " (reused on purpose: --seed)" if seed is not None and seed in reg.blocks_used("residual", version) else ""
    console.print(f"residual {version}: scoring on held-out block {block}{reused}; looks of {n} episodes up to "
                  f"{max(n, max_episodes or proj.config.governance.max_eval_episodes)}")
    card, _ = score_residual(proj, ResidualController(actor, version), base, episodes=n, real=real,
                             candidate_version=version, block=block, max_episodes=max_episodes,
                             on_look=lambda lk: console.print(f"  {lk.line()}"))
    action = apply_verdict(proj, card, version, promote=promote)
    print_scorecard(card, action)
    raise typer.Exit(VERDICT_EXIT[card.verdict])


@app.command("bench")
@locked("env residual bench", check=preflight.residual_bench)
def bench(
    project: ProjectArg,
    steps: Annotated[int | None, typer.Option("--steps", callback=STEPS_CHECK,
                                              help="Env steps per arm and seed. [default: bench.steps in cadenza.toml, "
                                                   "200000]", show_default=False)] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", callback=number_check(ge=1, le=1000),
                                              help="Seeds per arm (residual.seed, +1, ...). [default: bench.seeds in "
                                                   "cadenza.toml, 3]", show_default=False)] = None,
    arms: Annotated[str, typer.Option("--arms",
                                      help="Comma-separated arms: residual (governed PPO on the base), residual-sac "
                                           "(the same with the SAC learner; reported, not a verdict peer), full (our "
                                           "PPO without a base), sb3 (Stable-Baselines3 PPO), sb3-sac "
                                           "(Stable-Baselines3 SAC at the SAC residual's update ratio), "
                                           "sb3-sac-utd1 (the same at one update per env step, SB3's single-env "
                                           "default); SB3 arms are skipped with a note if it is not installed.")] = (
                                               "residual,full,sb3"),
    full_reward: Annotated[str | None, typer.Option("--full-reward", callback=choice_check("sparse", "dense", "both"),
                                                    help="Reward the full-RL arms train on: sparse (outcome only), "
                                                         "dense (the task's documented shaped reward) or both (one arm "
                                                         "each). [default: the residual's, residual.reward in "
                                                         "cadenza.toml]", show_default=False)] = None,
    cost_per_gpu_hour: Annotated[float | None, typer.Option("--cost-per-gpu-hour", callback=number_check(ge=0.0,
            le=1e6),
            help="Dollars per GPU-hour, for runs on cuda/mps. [default: bench.cost_per_gpu_hour in cadenza.toml, 2.0]",
            show_default=False)] = None,
    cost_per_cpu_core_hour: Annotated[float | None, typer.Option("--cost-per-cpu-core-hour",
            callback=number_check(ge=0.0, le=1e6),
            help="Dollars per CPU core-hour, for runs on the CPU. [default: bench.cost_per_cpu_core_hour in "
                 "cadenza.toml, 0.05]", show_default=False)] = None,
    eval_episodes: Annotated[int | None, typer.Option("--eval-episodes", callback=number_check(ge=1, le=1_000_000),
                                                      help="Held-out episodes per point of the learning curve (the "
                                                           "final point uses governance.eval_episodes). [default: 200]",
                                                           show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", callback=number_check(ge=1, le=1024),
                                                help="Training runs at a time, one process each (with --backend ray "
                                                     "and no address: the local Ray instance's CPUs). [default: "
                                                     "physical CPU cores on the CPU, 1 on a GPU]",
                                                show_default=False)] = None,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
    backend: BackendOpt = None,
    ray_address: RayAddressOpt = None,
    track: TrackOpt = None,
) -> None:
    """Residual RL against full RL from scratch: samples, compute, dollars, accuracy, and a verdict.

    Writes `<project>/bench/<timestamp>/` with report.md, report.json and curves.png. Exit code: 0 the
    residual wins, 3 it loses, 4 undecided or NEEDS_DATA (budget too small to judge).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cadenza.bench.report import print_report
    from cadenza.bench.runner import resolve_settings, run_bench
    from cadenza.project.config import load_project

    proj = load_project(project)
    s = resolve_settings(proj, steps=steps, seeds=seeds, arms=arms, full_reward=full_reward, device=device,
                         real=real, cost_per_gpu_hour=cost_per_gpu_hour,
                         cost_per_cpu_core_hour=cost_per_cpu_core_hour, eval_episodes=eval_episodes, workers=workers,
                         backend=backend, ray_address=ray_address)
    for sk in s.skipped:
        console.print(f"[yellow]{sk['label']} skipped:[/yellow] {sk['reason']}", soft_wrap=True)
    where = f" on {s.scale.describe()}" if s.scale.backend != "local" else ""
    console.print(f"bench: {', '.join(a.id for a in s.arms)} x {len(s.seeds)} seeds x {s.steps:,} env steps, "
                  f"{s.workers} at a time{where}")
    with Progress(TextColumn("[bold]bench[/bold] runs"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        job = bar.add_task("bench", total=len(s.arms) * len(s.seeds))

        def on_run(r: dict, done: int, total: int) -> None:
            bar.update(job, completed=done)
            bar.console.print(f"  {r['arm']:<12} seed {r['seed']}: {r['env_steps']:,} steps, {r['wall_s']:.1f} s, "
                              f"final success {r['final']['success_rate']:.1%}")

        try:
            with command_tracker(proj, "bench", track, bar.console) as tr:
                res = run_bench(proj, s, on_run=on_run, tracker=tr)
        except KeyboardInterrupt:
            bar.stop()
            console.print("interrupted: no report written")
            raise typer.Exit(130) from None
    print_report(console, res.report, res.out_dir)
    raise typer.Exit({"RESIDUAL_WINS": 0, "RESIDUAL_LOSES": 3}.get(res.verdict.outcome, 4))


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="residual")
