"""The bench report: ``report.json`` (validated against :data:`cadenza.bench.schema.REPORT_SCHEMA`),
``report.md`` and the terminal table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cadenza.bench.schema import errors
from cadenza.bench.verdict import BenchVerdict
from cadenza.project.config import Project
from cadenza.utils.io import atomic_write_json, atomic_write_text, json_default, sha256_file


def build_report(project: Project, s: Any, *, arms: list[dict[str, Any]], base_row: dict[str, Any],
                 verdict: BenchVerdict, wall_s: float, machine: dict[str, Any],
                 eval_targets: list[int], scale: dict[str, Any] | None = None) -> dict[str, Any]:
    from cadenza.residual.scaffold import load_spec
    from cadenza.residual.scoring import EVAL_SEED
    from cadenza.tasks.factory import base_source
    from cadenza.utils.versions import library_versions

    g, t = project.config.governance, project.config.task
    runs = [r for a in arms for r in a["runs"]]
    spec = load_spec(project, s.real)
    report = {
        "kind": "cadenza.bench.report", "schema_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "project": project.name, "project_root": str(project.root), "task": base_row["task"], "real": s.real,
        "command": s.command(project),
        "settings": {
            "steps": s.steps, "seeds": s.seeds, "arms": [a["id"] for a in arms],
            "residual_reward": project.config.residual.reward, "full_reward": s.full_reward,
            "device": s.device, "workers": s.workers, "cost_per_gpu_hour": s.rates.gpu_per_hour,
            "cost_per_cpu_core_hour": s.rates.cpu_core_per_hour, "eval_episodes": s.eval_episodes,
            "final_episodes": s.final_episodes, "eval_seed": EVAL_SEED, "eval_targets": eval_targets,
            "level": t.level, "num_envs": t.num_envs, "success_threshold": g.success_threshold,
            "regression_margin": g.regression_margin, "confidence": g.confidence,
            "base": base_source(project, s.real), "config_sha256": sha256_file(project.root / "cadenza.toml"),
            "residual_spec": spec["architecture"] if spec else None,
            **({"arm_steps": dict(s.arm_steps)} if s.arm_steps else {}),
        },
        "base": base_row, "arms": arms, "verdict": verdict.as_dict(),
        "timing": {"bench_wall_s": wall_s, "train_wall_s": sum(r["wall_s"] for r in runs),
                   "train_cpu_s": sum(r["cpu_s"] for r in runs), "eval_wall_s": sum(r["eval_wall_s"] for r in runs)},
        "machine": machine, "versions": library_versions("torch", "stable-baselines3", "scipy"),
        "files": {"report_md": "report.md", "report_json": "report.json", "curves_png": "curves.png"},
    }
    if scale is not None:
        report["scale"] = scale
    return json.loads(json.dumps(report, default=json_default))  # plain JSON types (tuples -> lists)


def check_report(report: dict[str, Any]) -> None:
    errs = errors(report)
    if errs:
        raise ValueError("bench report does not match its schema: " + "; ".join(errs[:5]))


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    check_report(report)
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", markdown(report))


# ---------------------------------------------------------------------------------------------- formatting
def fmt_steps(v: float | None) -> str:
    return "not reached" if v is None else f"{v:,.0f}"


def fmt_money(v: float) -> str:
    if v == 0:
        return "$0"
    return f"${v:.2g}" if v < 0.01 else f"${v:,.2f}" if v >= 1 else f"${v:.3f}"


def steps_cell(summary: dict[str, Any]) -> str:
    m = summary["steps_to_threshold_median"]
    hits, n = summary["seeds_reaching_threshold"], summary["seeds"]
    return f"{fmt_steps(m)} ({hits}/{n})"


def result_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per arm plus the base-alone reference (the table of the terminal and of report.md)."""
    rows = []
    for a in report["arms"]:
        if a["skipped"]:
            rows.append([a["label"], a["reward"], "skipped", "", "", "", "", "", "", "", "", ""])
            continue
        s = a["summary"]
        lo, hi = s["success_ci"]
        rows.append([a["label"], a["reward"], f"{s['env_steps']:,.0f}", f"{s['wall_s']:,.1f}", f"{s['cpu_s']:,.1f}",
                     f"{s['device_hours']:.4f} {s['device_hours_unit']}", fmt_money(s["dollars"]),
                     f"{s['success_rate']:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{s['collision_rate']:.1%}",
                     f"{s['mean_return']:+.3f}", steps_cell(s)])
    b = report["base"]
    lo, hi = b["success_ci"]
    thr = report["settings"]["success_threshold"]
    rows.append([b["label"], "-", "0", "0", "0", "0", fmt_money(0.0), f"{b['success_rate']:.1%}",
                 f"[{lo:.1%}, {hi:.1%}]", f"{b['collision_rate']:.1%}", f"{b['mean_return']:+.3f}",
                 "0 (already)" if b["success_rate"] >= thr else "n/a (no training)"])
    return rows


def result_columns(report: dict[str, Any]) -> list[str]:
    thr = report["settings"]["success_threshold"]
    return ["arm", "train reward", "env steps", "wall s", "CPU s", "device-hours", "cost", "final success",
            "95% interval", "collision", "return", f"steps to {thr:.0%} (seeds)"]


def markdown(report: dict[str, Any]) -> str:
    s, v = report["settings"], report["verdict"]
    n_seeds = len(s["seeds"])
    lines = [f"# Bench: residual RL against full RL from scratch [{report['task']}]", "",
             f"Project `{report['project']}`, task **{report['task']}** "
             f"({'real simulator' if report['real'] else 'proxy task'}), {report['created']}.", "",
             f"**Verdict: {v['outcome']}**: {v['line']}", ""]
    if v["headline_sample_ratio"] is not None:
        lines += [f"* sample-efficiency ratio (full steps to threshold / residual steps to threshold, the smallest "
                  f"over the full-RL arms): **{v['headline_sample_ratio']['text']}**",
                  f"* cost ratio (dollars to reach the threshold, same rule): **{v['headline_cost_ratio']['text']}**"]
    lines += [f"* {r}" for r in v["reasons"]]
    lines += ["", f"## Results (mean of {n_seeds} seed{'s' if n_seeds > 1 else ''} per arm; final success pooled "
              f"over seeds, {s['final_episodes']} episodes per seed)", ""]
    cols = result_columns(report)
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in result_rows(report)]
    for a in report["arms"]:
        if a["skipped"]:
            lines += ["", f"{a['label']} skipped: {a['note']}"]
    lines += ["", "## Per run", "",
              "| arm | seed | env steps | wall s | CPU s | eval wall s | device-hours | cost | final success | "
              "steps to threshold | stop |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for a in report["arms"]:
        for r in a["runs"]:
            c = r["cost"]
            lines.append(f"| {a['label']} | {r['seed']} | {r['env_steps']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['eval_wall_s']:.1f} | {c['device_hours']:.5f} {c['unit']} | {fmt_money(c['dollars'])} | "
                         f"{r['final']['success_rate']:.1%} | {fmt_steps(r['steps_to_threshold'])} | "
                         f"{r['stop_reason']} |")
    lines += ["", "## Learning curves", "", "![success against env steps](curves.png)", "",
              "Success of the deterministic policy on held-out episodes at the target level; line = mean over "
              "seeds, band = lowest to highest seed, dotted line = the deploy threshold.", "",
              "## How it was measured", "",
              f"* every arm trains for `--steps` = {s['steps']:,} env steps per seed"
              + "".join(f" ({k}: {v:,}, its evaluations spread over that budget)"
                        for k, v in s.get("arm_steps", {}).items())
              + " (whole rounds: the last round may pass the budget; the exact count is in the table), seeds "
              f"{', '.join(map(str, s['seeds']))}, at perturbation level {s['level']} with the governor's curriculum;",
              f"* evaluation: the deterministic policy (the Gaussian mean) on {s['eval_episodes']} held-out "
              f"episodes (seed {s['eval_seed']}, never used in training, the same for every arm and checkpoint) at "
              f"the target level, at step 0 and at the first training boundary past each of "
              f"{len(s['eval_targets'])} targets (geometric from budget/64, then every tenth); after training "
              f"{s['final_episodes']} episodes give the final success and close the curve;",
              f"* steps to threshold: the first evaluation whose success is at or above {s['success_threshold']:.0%}; "
              "an arm reaches it when more than half of its seeds do (median over seeds); 'not reached' means "
              "more than the budget, so a ratio against it is a lower bound ('> X');",
              "* time: wall and process-CPU seconds of training only (evaluations are timed apart, 'eval wall s'); "
              f"{s['workers']} run(s) at a time" + (", one torch thread each" if s["workers"] > 1 else "")
              + _scale_line(report.get("scale")) + ";",
              f"* cost: on a GPU, GPU-hours = wall / 3600 at ${s['cost_per_gpu_hour']:g}/h; on the CPU, CPU "
              f"core-hours = CPU seconds / 3600 at ${s['cost_per_cpu_core_hour']:g}/h; cost to threshold = a run's "
              "dollars per env step x its steps to threshold;",
              "* final success: pooled over seeds with a 95% Wilson interval; comparisons use Newcombe's interval "
              f"of the difference and a non-inferiority margin of {s['regression_margin']:.0%};",
              f"* rewards: the residual trains on the {s['residual_reward']} reward (`residual.reward`); the full-RL "
              "arms (ours and SB3) train without the base on "
              + ("the same reward" if s["full_reward"] == s["residual_reward"] else
                 f"the {s['full_reward']} reward" if s["full_reward"] != "both" else "the sparse and the dense reward, "
                 "each its own arm")
              + " (sparse = +1 success / -1 collision; dense = that plus the task's documented progress term); every "
              "arm is evaluated on outcomes (return = success minus collision).", "",
              "## Settings (to reproduce)", "", "```bash", report["command"], "```", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | `{json.dumps(val)}` |" for k, val in s.items()]
    lines += ["", "Hyperparameters per arm (first seed; the same for every seed):", "", "```json"]
    hp = {a["id"]: a["runs"][0]["hyperparameters"] for a in report["arms"] if a["runs"]}
    lines += [json.dumps(hp, indent=2), "```", "",
              f"Timing: bench {report['timing']['bench_wall_s']:.1f} s wall; training "
              f"{report['timing']['train_wall_s']:.1f} s "
              f"wall / {report['timing']['train_cpu_s']:.1f} s CPU summed over runs; evaluations "
              f"{report['timing']['eval_wall_s']:.1f} s wall.", "",
              f"Machine: `{json.dumps(report['machine'])}`", "", f"Versions: `{json.dumps(report['versions'])}`", ""]
    return "\n".join(lines)


def terminal_rows(report: dict[str, Any]) -> list[list[str]]:
    """The compact terminal table (the full one is in report.md)."""
    rows = []
    for a in report["arms"]:
        if a["skipped"]:
            rows.append([a["id"], "skipped", "", "", "", "", ""])
            continue
        s = a["summary"]
        lo, hi = s["success_ci"]
        m = s["steps_to_threshold_median"]
        rows.append([a["id"], f"{s['env_steps']:,.0f}", f"{s['wall_s']:,.0f}", fmt_money(s["dollars"]),
                     f"{s['success_rate']:.1%} [{lo * 100:.0f}-{hi * 100:.0f}]", f"{s['collision_rate']:.1%}",
                     f"{'never' if m is None else f'{m:,.0f}'} {s['seeds_reaching_threshold']}/{s['seeds']}"])
    b = report["base"]
    lo, hi = b["success_ci"]
    thr = report["settings"]["success_threshold"]
    rows.append(["base alone", "0", "0", fmt_money(0.0), f"{b['success_rate']:.1%} [{lo * 100:.0f}-{hi * 100:.0f}]",
                 f"{b['collision_rate']:.1%}", "0 (already)" if b["success_rate"] >= thr else "n/a"])
    return rows


def print_report(console: Any, report: dict[str, Any], out_dir: Path) -> None:
    """The terminal view: the compact results table, the verdict line and where the files are."""
    from rich.table import Table

    st = report["settings"]
    n = len(st["seeds"])
    t = Table(title=f"bench \\[{report['task']}], {st['steps']:,} env steps per arm, mean of {n} "
                    f"seed{'s' if n > 1 else ''}",
              title_justify="left")
    for c in ("arm", "steps", "wall s", "cost", "success [95% CI]", "coll.", f"to {st['success_threshold']:.0%}"):
        t.add_column(c, justify="left" if c == "arm" else "right")
    for r in terminal_rows(report):
        t.add_row(*r)
    console.print(t)
    units = sorted({a["summary"]["device_hours_unit"] for a in report["arms"] if a["summary"]})
    rate = " / ".join(f"{u} x ${st['cost_per_gpu_hour'] if u.startswith('GPU') else st['cost_per_cpu_core_hour']:g}"
                      for u in units)
    console.print(f"cost = {rate} per seed (training only); final success pooled over seeds; every column in report.md",
                  soft_wrap=True)
    for a in report["arms"]:
        if a["skipped"]:
            console.print(f"[yellow]{a['label']} skipped:[/yellow] {a['note']}", soft_wrap=True)
    v = report["verdict"]
    style = {"RESIDUAL_WINS": "bold green", "RESIDUAL_LOSES": "bold red"}.get(v["outcome"], "bold yellow")
    console.print(f"verdict: [{style}]{v['outcome']}[/{style}]  {v['line']}", soft_wrap=True)
    if v["headline_sample_ratio"] is not None:
        console.print(f"sample-efficiency ratio: {v['headline_sample_ratio']['text']}   cost ratio: "
                      f"{v['headline_cost_ratio']['text']}", soft_wrap=True)
    console.print(f"bench wall time {report['timing']['bench_wall_s']:.1f} s")
    console.print(f"report: {out_dir / 'report.md'}\njson:   {out_dir / 'report.json'}\ncurves: "
                  f"{out_dir / 'curves.png'}")


def _scale_line(scale: dict[str, Any] | None) -> str:
    if not scale or scale["backend"] == "local":
        return ""
    where = scale["ray_address"] or "a local Ray instance"
    return (f", as Ray tasks on {where} ({scale['nodes']} node(s), {scale['cpus']} CPUs, {scale['nodes_used']} "
            f"used; {scale['retries']} task(s) re-run after a lost worker)")
