"""``cadenza env residual init|train|eval|bench``."""

from __future__ import annotations

from typing import Annotated

import typer

from cadenza.cli.common import DeviceOpt, ProjectArg, RealOpt, console, kv_table, not_built

app = typer.Typer(help="The residual stack: scaffold and profile, governed training, governance, bench.",
                  no_args_is_help=True)


@app.command("init")
def init(
    project: ProjectArg,
    hidden_dim: Annotated[int | None, typer.Option("--hidden-dim", help="Residual MLP hidden width. [default: 256, from cadenza.toml]", show_default=False)] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Action scale: how hard the residual may nudge the base. [default: 0.15, from cadenza.toml]", show_default=False)] = None,
    obs_dim: Annotated[int | None, typer.Option("--obs-dim", help="Observation width. [default: probed from the task/base]", show_default=False)] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit", help="Largest per-step change of the residual output. [default: 0.5, from cadenza.toml]", show_default=False)] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Drop the gate term: a = clamp(a_base + alpha * delta).")] = False,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
) -> None:
    """Fix the residual architecture and dry-run profile it (params, latency, memory). No training."""
    from cadenza.project.config import load_project
    from cadenza.residual.scaffold import init_residual, spec_path

    proj = load_project(project)
    spec = init_residual(proj, hidden_dim=hidden_dim, alpha=alpha, obs_dim=obs_dim, rate_limit=rate_limit,
                         gate=False if no_gate else None, device=device, real=real)
    a, p = spec["architecture"], spec["profile"]
    console.print(kv_table(f"residual head  [{spec['task']}]", [
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


@app.command("train")
def train(
    project: ProjectArg,
    steps: Annotated[int | None, typer.Option("--steps", help="Env-step budget. [default: residual.steps in cadenza.toml]", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed. [default: residual.seed in cadenza.toml]", show_default=False)] = None,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
) -> None:
    """Governed PPO on the frozen base; DEPLOY promotes the new residual, BLOCK keeps the old one."""
    not_built("cadenza env residual train", 3)


@app.command("eval")
def eval_(
    project: ProjectArg,
    promote: Annotated[bool, typer.Option("--promote", help="Set the residual as the baseline if it passes.")] = False,
    episodes: Annotated[int | None, typer.Option("--episodes", help="Evaluation episodes. [default: governance.eval_episodes]", show_default=False)] = None,
    real: RealOpt = False,
) -> None:
    """Re-score the current residual: success / collision / sanity / regression -> DEPLOY | BLOCK | NEEDS_DATA."""
    not_built("cadenza env residual eval", 3)


@app.command("bench")
def bench(
    project: ProjectArg,
    steps: Annotated[int | None, typer.Option("--steps", help="Env steps per arm. [default: bench.steps in cadenza.toml]", show_default=False)] = None,
    cost_per_gpu_hour: Annotated[float, typer.Option("--cost-per-gpu-hour", help="Dollar rate used to price each arm.")] = 2.0,
    device: DeviceOpt = "auto",
    real: RealOpt = False,
) -> None:
    """Residual RL against full RL from scratch: compute, dollars, accuracy, and a verdict."""
    not_built("cadenza env residual bench", 4)
