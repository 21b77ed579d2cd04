"""``cadenza env lora add|data|finetune|eval|decode``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cadenza.cli import preflight
from cadenza.cli.common import (
    SEED_CHECK,
    VERDICT_EXIT,
    ProjectArg,
    TrackOpt,
    checked,
    command_tracker,
    console,
    err_console,
    existing_file,
    kv_table,
    locked,
    number_check,
    text_check,
)

app = typer.Typer(rich_markup_mode="markdown",
                  help="The LoRA action head: examples, fine-tuning, governance, decoding.", no_args_is_help=True)


def _vocab(proj: Any) -> Any:
    from cadenza.mission.runner import mission_vocabulary

    return mission_vocabulary(proj)[0]


def _print_card(s: Any, action: str | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    card = s.card
    if card.metrics:
        t = Table(title=f"missions \\[{card.task}, perturb 0], the same {card.episodes} held-out sites (block "
                        f"{card.block}), goals never trained on", title_justify="left")
        for col in ("planner", "success", "95% interval", "collisions", "abstained", "invalid steps"):
            t.add_column(col, justify="left" if col == "planner" else "right")
        names = {"lora": "LoRA head", "scripted": "scripted expert", "promoted": "promoted head",
                 "frozen": "frozen encoder + decoder"}
        for k, m in card.metrics.items():
            lo, hi = m["success_interval"]
            t.add_row(names.get(k, k), f"{m['success_rate']:.1%}", f"[{lo:.1%}, {hi:.1%}]",
                      f"{m['collision_rate']:.1%}", str(m["abstained"]), str(m["invalid_steps"]))
        console.print(t)
    plans = s.report.get("plans")
    if plans:
        t = Table(title=f"plans for held-out goals ({s.report.get('heldout_texts', 0)} texts: held-out groups and "
                        "paraphrases)", title_justify="left")
        for col in ("model", "exact plan", "95% interval", "step accuracy", "parameter error", "abstained"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for p in plans.values():
            if not p["goals"]:
                continue
            lo, hi = p["exact_interval"]
            err = p["param_error_share"]
            t.add_row(escape(p["label"]), f"{p['exact_plan_match']:.1%}", f"[{lo:.1%}, {hi:.1%}]",
                      f"{p['step_accuracy']:.1%}", "-" if err is None else f"{err:.1%} of range", str(p["abstained"]))
        console.print(t)
    style = {"DEPLOY": "bold green", "BLOCK": "bold red", "NEEDS_DATA": "bold yellow"}[card.verdict]
    console.print(f"verdict: [{style}]{card.verdict}[/{style}]")
    for r in card.reasons:
        console.print(f"  {r}", soft_wrap=True, markup=False)
    if s.add_lines:
        console.print("add these examples (then fine-tune again):")
        for line in s.add_lines:
            console.print(f"  {line}", soft_wrap=True, markup=False)
    if action:
        console.print(f"registry: {action}", markup=False)


def _look(look: Any) -> None:
    err_console.print(f"  {look.line()}", markup=False)


@app.command("add")
@locked("env lora add", check=preflight.nothing)
def add(
    project: ProjectArg,
    goal: Annotated[str, typer.Argument(callback=text_check(), help="The goal text, e.g. \"enter the debris field\".",
                                        show_default=False)],
    steps: Annotated[str, typer.Option("--steps", callback=text_check(),
                                       help="Action steps, comma separated: 'walk_forward 1.0, crawl_forward 0.5'. "
                                            "Every step is checked against [mission.actions] (names, parameters "
                                            "and their ranges).", show_default=False)],
    image: Annotated[Path | None, typer.Option("--image", callback=existing_file,
                                               help="Optional visual context for the example, stored by path and "
                                                    "sha256.")] = None,
) -> None:
    """Add a goal -> action-steps training example to PROJECT/lora/dataset.jsonl."""
    from rich.markup import escape

    from cadenza.lora.dataset import add_example, load_dataset
    from cadenza.project.config import load_project

    proj = load_project(project)
    ex = add_example(proj, _vocab(proj), goal, steps, image)
    n = len(load_dataset(proj))
    console.print(f"added: {escape(ex.goal)!s} -> {escape(ex.steps_text())} (objective {ex.objective}"
                  + (f", image sha256 {ex.image['sha256'][:12]}" if ex.image else "") + f"); {n} examples",
                  soft_wrap=True)


@app.command("data")
@locked("env lora data", check=preflight.nothing, when=lambda p: p.get("finetune") is not None)
def data(
    project: ProjectArg,
    finetune: Annotated[Path | None, typer.Option("--finetune", help="Merge the steps of successful missions from "
                                                  "an `env finetune` jsonl export or a run log (goal + observation "
                                                  "-> action) into the dataset first.",
                                                  callback=existing_file)] = None,
) -> None:
    """Show the current training dataset (and merge run records with --finetune)."""
    from rich.markup import escape
    from rich.table import Table

    from cadenza.lora.dataset import dataset_path, load_dataset, merge_finetune
    from cadenza.mission.objectives import OBJECTIVES
    from cadenza.project.config import load_project

    proj = load_project(project)
    vocab = _vocab(proj)
    if finetune is not None:
        added, skipped = merge_finetune(proj, vocab, finetune)
        console.print(f"merged {added} records from {finetune} ({skipped} skipped: failed missions, invalid steps "
                      "or already merged)", markup=False, soft_wrap=True)
    rows = load_dataset(proj)
    t = Table(title=f"LoRA dataset {dataset_path(proj)} ({len(rows)} examples)", title_justify="left")
    for col in ("#", "goal", "objective", "steps", "source", "image"):
        t.add_column(col, justify="right" if col == "#" else "left")
    for i, ex in enumerate(rows, 1):
        steps = ex.steps_text()
        if ex.source == "finetune":
            steps = f"{steps}  (from an observation)"
        t.add_row(str(i), escape(ex.goal), ex.objective, escape(steps), ex.source,
                  f"{escape(Path(ex.image['path']).name)} {ex.image['sha256'][:8]}" if ex.image else "")
    console.print(t)
    added_ = [e for e in rows if e.source == "add"]
    per_obj = {o: len({e.goal for e in added_ if e.objective == o}) for o in OBJECTIVES}
    per_act = {a: sum(any(s.name == a for s in e.steps) for e in added_) for a in vocab.names}
    console.print("goals per objective: " + ", ".join(f"{k} {v}" for k, v in per_obj.items()), markup=False)
    console.print("examples per action: " + ", ".join(f"{k} {v}" for k, v in per_act.items()), markup=False)


@app.command("finetune")
@locked("env lora finetune", check=preflight.tracked)
def finetune(
    project: ProjectArg,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of the LoRA stage (one epoch = one pass over the "
                                                         "generated training pairs).",
                                        callback=number_check(ge=1, le=100_000))] = 5,
    lr: Annotated[float, typer.Option("--lr", callback=number_check(gt=0.0, le=10.0),
                                      help="Learning rate of the LoRA matrices (the decoder uses its own, "
                                           "docs/lora.md).")] = 2e-4,
    rank: Annotated[int, typer.Option("--rank", callback=number_check(ge=1, le=1024),
                                      help="LoRA rank on the encoder's attention projections.")] = 8,
    gate: Annotated[bool, typer.Option("--gate",
                                       help="Run the scorecard afterwards: promote on DEPLOY, otherwise the "
                                            "baseline stays (exit 0 DEPLOY, 3 BLOCK, 4 NEEDS_DATA).")] = False,
    seed: Annotated[int, typer.Option("--seed", callback=SEED_CHECK,
                                      help="Seed of the generated data (paraphrases, training sites, DAgger "
                                           "rounds) and of training.")] = 0,
    track: TrackOpt = None,
) -> None:
    """Generate goal -> action data and fine-tune the adapter; register it (kind lora)."""
    from cadenza.lora.finetune import FinetuneOptions
    from cadenza.project.config import load_project

    proj = load_project(project)
    opts = FinetuneOptions(epochs=epochs, lr=lr, rank=rank, seed=seed)
    with command_tracker(proj, "lora-finetune", track, err_console) as tr:
        _finetune_tracked(proj, opts, gate, tr)


def _finetune_tracked(proj: Any, opts: Any, gate: bool, tr: Any) -> None:
    """``lora finetune`` with its tracker: the options, the loss curves (every 10th step), the scorecard."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cadenza.lora.finetune import Finetuned
    from cadenza.lora.finetune import finetune as run_finetune

    tasks: dict[str, Any] = {}
    epochs, lr, rank = opts.epochs, opts.lr, opts.rank
    tr.params({"command": "env lora finetune", **vars(opts)})
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as bar:
        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        res = run_finetune(proj, opts, progress=progress, status=lambda s: bar.console.print(s, markup=False))
    if not isinstance(res, Finetuned):
        tr.tag("verdict", res.card.verdict)
        _print_card(res)
        raise typer.Exit(VERDICT_EXIT[res.card.verdict])
    for stage, curve in res.fit.losses.items():
        for i in range(0, len(curve), 10):
            tr.metrics({f"loss/{stage}": curve[i]}, step=i)
    tr.params({"training": res.metadata["training"], "calibration": res.metadata["calibration"]})
    tr.tag("version", res.version)
    training = res.metadata["training"]
    cal = res.metadata["calibration"]
    console.print(kv_table(f"lora {res.version} registered", [
        ("encoder", res.fit.head.metadata()["encoder"]["name"]),
        ("LoRA", f"rank {rank} on {', '.join(res.fit.head.encoder.lora_targets)}, {epochs} epochs, lr {lr:g}"),
        ("training pairs", f"{training['pairs']:,} ({training['closed_loop_pairs']:,} closed-loop, "
                           f"{training['dagger_pairs']:,} from the DAgger rounds)"),
        ("held-out goal groups", len(res.metadata["heldout_goals"])),
        ("abstention threshold", f"{cal['threshold']:.3f} (similarity; {cal.get('in_distribution', '')})"),
        ("time", f"{res.seconds:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in training["seconds"].items()
                                                    if k != "total") + ")"),
    ]))
    if gate:
        from cadenza.lora.evaluate import evaluate

        ev = evaluate(proj, res.version, promote=True, on_look=_look)
        tr.metrics({"scorecard": ev.score.card.as_dict()}, step=0)
        tr.tag("verdict", ev.score.card.verdict)
        tr.artifact(ev.report_path)
        _print_card(ev.score, ev.action)
        console.print(f"report: {ev.report_path}", markup=False, soft_wrap=True)
        raise typer.Exit(VERDICT_EXIT[ev.score.card.verdict])


@app.command("eval")
@locked("env lora eval", check=preflight.nothing)
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote", help="Deploy the adapter if it passes (DEPLOY).")] = False,
) -> None:
    """Run the governance scorecard on the latest trained adapter (next held-out block of sites)."""
    from cadenza.lora.evaluate import evaluate, latest_version
    from cadenza.project.config import load_project

    proj = load_project(project)
    version = latest_version(proj)
    console.print(f"scoring lora {version}", markup=False)
    ev = evaluate(proj, version, promote=promote, on_look=_look)
    _print_card(ev.score, ev.action)
    console.print(f"report: {ev.report_path}", markup=False, soft_wrap=True)
    raise typer.Exit(VERDICT_EXIT[ev.score.card.verdict])


@app.command("decode")
@checked(preflight.nothing)
def decode(
    project: ProjectArg,
    goal: Annotated[str, typer.Argument(callback=text_check(), help="The goal to decode into action steps.",
                                        show_default=False)],
) -> None:
    """Decode a goal into action steps with the promoted adapter (the latest one when none is promoted)."""
    from rich.markup import escape
    from rich.table import Table

    from cadenza.governance.registry import open_registry
    from cadenza.lora.evaluate import latest_version
    from cadenza.lora.planner import KIND, load_version
    from cadenza.project.config import load_project

    proj = load_project(project)
    version = open_registry(proj).baseline(KIND)
    note = ""
    if version is None:
        version = latest_version(proj)
        note = " (not promoted: no head has passed the scorecard yet)"
    head = load_version(proj, version)
    d = head.decode(goal)
    if d.abstained:
        console.print(f"lora {version}{note} abstains on {escape(goal)!r}: similarity {d.similarity:.3f} to the "
                      f"nearest trained goal ({escape(d.nearest)!r}) is below the threshold {d.threshold:.3f}",
                      soft_wrap=True)
        return
    t = Table(title=f"lora {version}{escape(note)}: {escape(goal)!r} (no observation: the plan as a whole)",
              title_justify="left")
    for col in ("#", "action", "parameters", "p(action)"):
        t.add_column(col, justify="right" if col in ("#", "p(action)") else "left")
    for i, (s, p) in enumerate(zip(d.steps, d.probs, strict=True), 1):
        t.add_row(str(i), s.name, " ".join(f"{k}={v:g}" for k, v in s.params.items()), f"{p:.3f}")
    console.print(t)
    console.print(f"confidence {d.confidence:.3f} (geometric mean of p(action)); similarity {d.similarity:.3f} to "
                  f"{escape(d.nearest)!r}, abstains below {d.threshold:.3f}", soft_wrap=True)
    console.print(f"steps: {escape(d.text())}", soft_wrap=True)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="lora")
