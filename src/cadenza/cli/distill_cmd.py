"""``cadenza env distill PROJECT`` and ``cadenza env distill eval PROJECT``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cadenza.cli import preflight
from cadenza.cli.common import (
    EPISODES_CHECK,
    SEED_CHECK,
    BackendOpt,
    DefaultCommandGroup,
    DeviceOpt,
    HeldoutBlockOpt,
    ProjectArg,
    RayAddressOpt,
    RealOpt,
    RolloutWorkersOpt,
    StudentMaxEpisodesOpt,
    TrackOpt,
    choice_check,
    command_tracker,
    console,
    kv_table,
    locked,
    number_check,
    version_check,
)

app = typer.Typer(rich_markup_mode="markdown", cls=DefaultCommandGroup, no_args_is_help=True,
                  help="Distill base+residual into a compact base-free student (fp32 / int8 ONNX), and govern it.")


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB ({n:,} bytes)"


def _success_table(score: Any) -> Any:
    from rich.table import Table

    card = score.card
    t = Table(title=f"teacher vs student \\[{card.task}], the same {card.episodes} held-out episodes "
                    f"({card.env_steps:,} env steps in all)",
              title_justify="left")
    for col in ("policy", "success", "95% interval", "collision", "mean length"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for m in card.metrics.values():
        lo, hi = m["success_interval"]
        t.add_row(m["label"], f"{m['success_rate']:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{m['collision_rate']:.1%}",
                  f"{m['mean_length']:.0f}")
    return t


def _gap_lines(score: Any) -> list[str]:
    from cadenza.governance.stats import paired_diff_interval

    out = []
    for p, tab in score.evidence.gaps.items():
        n = sum(tab)
        lo, hi = paired_diff_interval(*tab)
        out.append(f"gap teacher - student ({p}): {100 * (tab[1] - tab[2]) / n:+.1f} points, paired 95% interval "
                   f"[{100 * lo:+.1f}, {100 * hi:+.1f}] ({tab[1]} episodes only the teacher won, {tab[2]} only the "
                   "student)")
    return out


def _latency_table(latency: dict[str, dict[str, float]], budget_ms: float, shipped: str) -> Any:
    from rich.table import Table

    from cadenza.distill.scoring import headroom

    names = {"fp32": "ONNX fp32 (onnxruntime)", "int8": "ONNX int8 (onnxruntime)", "numpy": "numpy fp32"}
    t = Table(title=f"onboard latency: 1 observation, CPU, 1 thread, after warm-up, torch-free process; budget "
                    f"{budget_ms:g} ms (a {1000 / budget_ms:g} Hz loop)",
              title_justify="left")
    for col in ("runtime", "p50", "p99", "budget", "headroom (p99)"):
        t.add_column(col, justify="left" if col in ("runtime", "budget") else "right")
    for key, lat in latency.items():
        ok = lat["p99_us"] <= budget_ms * 1000
        t.add_row(names.get(key, key) + (" [shipped]" if key == shipped else ""), f"{lat['p50_us']:.1f} us",
                  f"{lat['p99_us']:.1f} us", "MEETS" if ok else "[bold red]MISSES[/bold red]",
                  f"{headroom(budget_ms, lat['p99_us']):,.0f}x")
    return t


def _print_verdict(card: Any, action: str | None = None) -> None:
    style = {"DEPLOY": "bold green", "BLOCK": "bold red", "NEEDS_DATA": "bold yellow"}[card.verdict]
    console.print(f"verdict: [{style}]{card.verdict}[/{style}]")
    for r in card.reasons:
        console.print(f"  {r}", soft_wrap=True, markup=False)
    if action:
        console.print(f"registry: {action}")


@app.command("build", hidden=True)
@locked("env distill", check=preflight.distill_build)
def build(
    project: ProjectArg,
    epochs: Annotated[int | None, typer.Option("--epochs", callback=number_check(ge=1, le=100_000),
                                               help="Distillation epochs: passes over all labelled states in the last "
                                                    "DAgger round (a quarter of that in earlier rounds). [default: 60, "
                                                    "distill.epochs]", show_default=False)] = None,
    quantize: Annotated[bool, typer.Option("--quantize",
                                           help="Also export an int8 student (ONNX Runtime dynamic quantization), "
                                                "after distill.quant_aware_epochs int8-aware fine-tuning epochs. "
                                                "[default: off]")] = False,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
    teacher: Annotated[str, typer.Option("--teacher", callback=choice_check("residual", "base"),
                                         help="residual: base + the promoted residual; base: the base alone (when no "
                                              "residual has passed governance). [default: residual]",
                                              show_default=False)] = "residual",
    rounds: Annotated[int | None, typer.Option("--rounds", callback=number_check(ge=1, le=1000),
                                               help="DAgger rounds; 1 is plain behaviour cloning. [default: 4, "
                                                    "distill.dagger_rounds]", show_default=False)] = None,
    episodes: Annotated[int | None, typer.Option("--episodes", callback=EPISODES_CHECK,
                                                 help="Held-out episodes for the teacher / student comparison. "
                                                      "[default: governance.eval_episodes]",
                                                      show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", callback=SEED_CHECK,
                                      help="Seed of the rollouts and the student's initialisation. [default: 0]",
                                      show_default=False)] = 0,
    backend: BackendOpt = None,
    ray_address: RayAddressOpt = None,
    rollout_workers: RolloutWorkersOpt = None,
    track: TrackOpt = None,
) -> None:
    """Collect teacher rollouts (DAgger), train + export the student into PROJECT/student/, register it.

    The student is judged and promoted by `cadenza env distill eval PROJECT --promote`.
    """
    from cadenza.distill.build import distill
    from cadenza.project.config import load_project
    from cadenza.scale.backend import resolve_scale

    proj = load_project(project)
    scale = resolve_scale(proj.config.scale, backend, ray_address, rollout_workers)
    if scale.backend == "ray" and scale.rollout_workers == 1:
        console.print(scale.rollout_note(), soft_wrap=True)

    def on_round(r: Any) -> None:
        own = "" if r.on_policy_mse is None else f", on its own states before refit {r.on_policy_mse:.4f}"
        console.print(f"  round {r.round}: beta {r.beta:.3f}, student drove {r.student_share:.0%}, +{r.samples:,} "
                      f"states ({r.total_samples:,} in all), held-out MSE {r.val_mse:.4f}{own} ({r.wall_s:.1f} s)",
                      soft_wrap=True, markup=False)

    with command_tracker(proj, "distill", track, console) as tr:
        res = distill(proj, epochs=epochs, quantize=quantize, device=device, real=real, teacher=teacher,
                      rounds=rounds, episodes=episodes, seed=seed, on_round=on_round,
                      on_stage=lambda s: console.print(s, soft_wrap=True, markup=False), scale=scale, tracker=tr)
    rep, score = res.report, res.score
    b = {name: f["bytes"] for name, f in rep["files"].items()}
    par = rep["parity_max_abs"]["candidate_heldout"]
    rows = [
        ("teacher", f"{rep['teacher']['label']} ({rep['teacher']['base']})"),
        ("student", f"MLP {rep['architecture']['obs_dim']} -> {rep['architecture']['layers']} x "
                    f"{rep['architecture']['hidden_dim']} ({rep['architecture']['activation']}) -> "
                    f"{rep['architecture']['act_dim']}, normaliser and bounds inside"),
        ("parameters", f"{rep['params']:,}"),
        ("ignored inputs", ", ".join(f"obs[{i}]" for i in rep["ignored_obs"]) + " (they repeat the last action)"
         if rep["ignored_obs"] else "none"),
        ("DAgger", f"{len(rep['dagger']['rounds'])} rounds, {rep['dagger']['samples']:,} labelled states"),
        *([("int8-aware epochs", _quant_aware_row(rep["quant_aware"]))] if rep.get("quant_aware") else []),
        ("ONNX fp32", _kb(b.get("student.onnx"))),
        ("ONNX int8", _kb(b.get("student.int8.onnx")) + (f", {rep['int8_to_fp32_bytes']:.0%} of fp32"
                                                         if rep["int8_to_fp32_bytes"] else " (use --quantize)")),
        ("safetensors", _kb(b.get("student.safetensors"))),
        ("parity (max |a - a_torch|)", ", ".join(f"{k} {v:.1e}" for k, v in par.items())),
    ]
    console.print(kv_table(f"student {res.version}  \\[{rep['task']}]", rows))
    console.print(_success_table(score))
    for line in _gap_lines(score):
        console.print(line, markup=False)
    console.print(_latency_table(rep["latency_us"], rep["latency_budget_ms"], rep["shipped_runtime"]))
    console.print(f"scorecard preview: {score.card.verdict} (record it, and promote on DEPLOY, with: "
                  f"cadenza env distill eval {proj.root}{' --real' if real else ''} --promote)", markup=False)
    console.print(f"artefacts: {proj.student_dir}/candidate{'-real' if real else ''}/  report: {res.report_path}  "
                  f"({res.wall_s:.1f} s)", markup=False)


def _quant_aware_row(q: dict[str, Any]) -> str:
    b, a = q["val_mse_before"], q["val_mse_after"]
    return (f"{q['epochs']}: held-out MSE int8 {b['int8']:.5f} -> {a['int8']:.5f}, "
            f"fp32 {b['fp32']:.5f} -> {a['fp32']:.5f}")


@app.command("eval")
@locked("env distill eval", check=preflight.distill_eval)
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote",
                                          help="Set the student as the baseline if it passes. [default: off]")] = False,
    episodes: Annotated[int | None, typer.Option("--episodes", callback=EPISODES_CHECK,
                                                 help="Evaluation episodes. [default: governance.eval_episodes]",
                                                 show_default=False)] = None,
    version: Annotated[str | None, typer.Option("--version", callback=version_check,
                                                help="Registry version to score. [default: the newest student]",
                                                show_default=False)] = None,
    real: RealOpt = False,
    max_episodes: StudentMaxEpisodesOpt = None,
    seed: HeldoutBlockOpt = None,
) -> None:
    """Score the student on gap / success / latency / regression -> DEPLOY | BLOCK | NEEDS_DATA.

    Exit code: 0 DEPLOY, 3 BLOCK, 4 NEEDS_DATA.
    """
    from cadenza.cli.common import VERDICT_EXIT
    from cadenza.distill.build import SHIPPED_RUNTIME
    from cadenza.distill.scoring import apply_verdict, score_student
    from cadenza.errors import CadenzaError
    from cadenza.governance.registry import open_registry
    from cadenza.project.config import load_project
    from cadenza.utils.io import atomic_write_json

    proj = load_project(project)
    reg = open_registry(proj)
    version = version or reg.latest("student")
    if version is None:
        raise CadenzaError(f"{proj.root}: no student distilled yet; run: cadenza env distill {proj.root}")
    n = episodes or proj.config.governance.eval_episodes
    block = reg.next_block("student", version) if seed is None else seed
    console.print(f"student {version}: scoring on held-out block {block}; looks of {n} episodes up to "
                  f"{max(n, max_episodes or proj.config.governance.max_student_eval_episodes)}")
    score = score_student(proj, version, episodes=n, real=real, block=block, max_episodes=max_episodes,
                          on_look=lambda lk: console.print(f"  {lk.line()}"))
    action = apply_verdict(proj, score.card, version, promote=promote)
    console.print(f"student {version}, teacher: {score.teacher['label']}")
    console.print(_success_table(score))
    for line in _gap_lines(score):
        console.print(line, markup=False)
    console.print(_latency_table(score.latency, proj.config.governance.latency_budget_ms, SHIPPED_RUNTIME))
    _print_verdict(score.card, action)
    atomic_write_json(proj.student_dir / ("eval_report_real.json" if real else "eval_report.json"), {
        "kind": "cadenza.distill.eval_report", "version": version, "teacher": score.teacher, "action": action,
        "scorecard": score.card.as_dict(), "latency_us": score.latency, "parity_max_abs": score.parity,
        "wall_s": score.wall_s})
    raise typer.Exit(VERDICT_EXIT[score.card.verdict])


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="distill")
