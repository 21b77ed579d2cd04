"""``cadenza env residual train``: governed PPO, checkpoints and resume, scorecard, registry, report."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.accel import Workload, configure
from cadenza.base.loader import load_base
from cadenza.errors import ArtefactError
from cadenza.governance.governor import Governor, LocalGovernor, Plan, TaskProfile
from cadenza.governance.registry import Registry
from cadenza.governance.scorecard import Scorecard
from cadenza.project.config import Project
from cadenza.residual.network import Critic, ResidualActor, count_params
from cadenza.residual.policy import ResidualController, save_policy
from cadenza.residual.ppo import PPO, PPOConfig
from cadenza.residual.scaffold import arch_from_spec
from cadenza.residual.scoring import apply_verdict, score_residual
from cadenza.residual.validation import Validator
from cadenza.tasks.factory import base_source, make_task
from cadenza.utils.io import atomic_write_json, atomic_write_with
from cadenza.utils.versions import library_versions


@dataclass
class TrainResult:
    version: str
    card: Scorecard
    action: str
    stop_reason: str
    env_steps: int
    best_round: int  # the round whose policy was registered (the best validation card)
    best_env_steps: int
    wall_s: float
    report_path: Path
    curve_path: Path
    warnings: list[str]
    resumed_from: int


def run_dir(project: Project, real: bool) -> Path:
    return project.residual_dir / ("run-real" if real else "run")


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArtefactError(f"{path}: unreadable checkpoint ({type(e).__name__}); re-run with --fresh") from None


def train_residual(project: Project, *, steps: int | None = None, seed: int | None = None, device: str = "auto",
                   real: bool = False, fresh: bool = False, governor: Governor | None = None,
                   on_round: Any = None, on_stage: Any = None) -> TrainResult:
    """Run a governed training; ``on_round(history_row, plan)`` is called after every round (progress),
    ``on_stage(text)`` when a stage starts, ``on_look(look)`` through ``on_stage`` after each scorecard look."""
    rc = project.config.residual
    g = project.config.governance
    seed = rc.seed if seed is None else seed
    budget = steps or rc.steps
    arch = arch_from_spec(project, real)
    base = load_base(base_source(project, real), project.root, arch.act_dim)
    accel = configure(device)
    governor = governor or LocalGovernor(stop_margin=g.stop_margin, validation_episodes=g.validation_episodes)
    profile_task = make_task(project, num_envs=1, real=real)
    profile = TaskProfile(obs_dim=arch.obs_dim, act_dim=arch.act_dim, horizon=profile_task.spec.horizon,
                          num_envs=project.config.task.num_envs, device=accel.device, budget_steps=budget,
                          target_level=project.config.task.level, use_base=True, label=profile_task.spec.label,
                          control_hz=profile_task.spec.control_hz)
    profile_task.close()
    plan: Plan = governor.plan(profile)
    cfg = PPOConfig(**plan.hyperparameters)
    rows = cfg.num_envs * cfg.n_steps  # one round's batch
    minibatch = min(cfg.minibatch_size, rows)
    updates = max(1, budget // rows) * cfg.epochs * -(-rows // minibatch)  # minibatch steps, at most
    accel = configure(device, workload=Workload("ppo_update", params=count_params(ResidualActor(arch).net)
                                                + count_params(Critic(arch)), batch=minibatch, expected_calls=updates))

    rdir = run_dir(project, real)
    ckpt_path, prog_path, best_path = rdir / "checkpoint.pt", rdir / "progress.json", rdir / "best.pt"
    history: list[dict[str, Any]] = []
    resumed_from = 0
    ckpt = None
    if not fresh and prog_path.is_file():
        prog = json.loads(prog_path.read_text())
        if prog.get("status") == "running" and prog.get("seed") == seed and prog.get("budget") == budget:
            ckpt = _load_checkpoint(ckpt_path)
            if ckpt is not None:
                history = prog["history"]
                resumed_from = len(history)
    steps_done = history[-1]["env_steps_total"] if history else 0
    task = make_task(project, num_envs=cfg.num_envs, level=plan.level_at(steps_done), real=real, seed=seed,
                     reward=rc.reward)
    ppo = PPO(arch, cfg, task, base, device=accel.device, seed=seed + 1000 * resumed_from, accel=accel)
    if ckpt is not None:
        ppo.load_state_dict(ckpt)
    ppo.collision_cost = history[-1].get("collision_cost", 0.0) if history else 0.0
    validator = Validator(project, base, episodes=plan.validation_episodes, real=real)
    cards = [h for h in history if "val_margin" in h]
    best = max(cards, key=lambda h: h["val_margin"]) if cards else None
    best_state = _load_checkpoint(best_path) if best is not None else None
    t0 = time.perf_counter()
    wall_before = history[-1]["wall_s"] if history else 0.0
    latest_warning: dict[str, str] = {}  # one line per kind of warning (the text before ':'), the latest
    stop_reason = ""
    while True:
        level = plan.level_at(steps_done)
        task.set_level(level)
        st = ppo.round()
        steps_done += st.env_steps
        row = {"round": len(history), "level": level, "env_steps_total": steps_done,
               "wall_s": wall_before + time.perf_counter() - t0, **st.as_dict(),
               "collision_cost": ppo.collision_cost}
        history.append(row)
        if LocalGovernor.validates(plan, history):
            card = validator.score(ResidualController(ppo.actor.eval(), "candidate"))
            ppo.actor.train()
            row.update(card.as_dict())
            # collisions as a constraint (a Lagrange multiplier on the deterministic policy's collision rate)
            target = min(validator.base_stats.collision_rate, plan.collision_target_share * g.max_collision_rate)
            ppo.collision_cost = min(plan.collision_cost_max, max(
                0.0, ppo.collision_cost + plan.collision_lr * (card.collision - target)))
            row["collision_target"] = target
            row["wall_s"] = wall_before + time.perf_counter() - t0
            if best is None or card.margin > best["val_margin"]:
                best = row
                best_state = {k: v.detach().clone() for k, v in ppo.actor.state_dict().items()}
                atomic_write_with(best_path, lambda tmp, sd=best_state: torch.save(sd, tmp))
        decision = governor.review(history, plan)
        for w in decision.warnings:
            latest_warning[w.split(":")[0]] = f"{w} (round {row['round']})"
        atomic_write_with(ckpt_path, lambda tmp: torch.save(ppo.state_dict(), tmp))
        atomic_write_json(prog_path, {"status": "running", "seed": seed, "budget": budget, "history": history,
                                      "plan": plan.as_dict()})
        if on_round is not None:
            on_round(row, plan)
        if decision.action == "stop":
            stop_reason = decision.reason
            break
    warnings = list(latest_warning.values())
    task.close()
    wall = wall_before + time.perf_counter() - t0

    # register the candidate, score it on held-out episodes, let the verdict move the baseline
    meta = {"task": profile.label, "env_steps": steps_done, "seed": seed, "stop_reason": stop_reason,
            "base": base.source, "real": real}
    actor = ppo.actor.cpu()
    best_round, best_steps = history[-1]["round"], steps_done
    if best is not None and best_state is not None:  # the round with the best validation card, not the last
        actor.load_state_dict(best_state)
        best_round, best_steps = best["round"], best["env_steps_total"]
    meta.update({"best_round": best_round, "best_env_steps": best_steps,
                 "validation": {k: best[k] for k in best if k.startswith("val_")} if best else None})
    tmp_policy = rdir / "candidate.pt"
    save_policy(actor, tmp_policy, meta)
    reg = Registry(project.root)
    version = reg.register("residual", {"policy.pt": tmp_policy}, meta)
    controller = ResidualController(actor.eval(), version)
    if on_stage is not None:
        on_stage(f"scoring {version} on held-out block 0 (looks of {g.eval_episodes} up to {g.max_eval_episodes} "
                 "episodes)")
    card, _ = score_residual(project, controller, base, real=real, candidate_version=version, block=0,
                             on_look=None if on_stage is None else lambda lk: on_stage(
                                 f"look at {lk.episodes} episodes ({lk.confidence:.2%} intervals): {lk.verdict}"
                                 + (f", undecided: {', '.join(lk.undecided)}" if lk.undecided else "")))
    action = apply_verdict(project, card, version, promote=True)

    curve_path = project.residual_dir / ("learning_curve_real.png" if real else "learning_curve.png")
    plot_curve(history, plan, project.config.governance.success_threshold, curve_path, profile.label)
    report = {
        "kind": "cadenza.residual.train_report",
        "project": project.name,
        "task": profile.label,
        "version": version,
        "verdict": card.verdict,
        "action": action,
        "stop_reason": stop_reason,
        "env_steps": steps_done,
        "best_round": best_round,
        "best_env_steps": best_steps,
        "heldout_block": card.block,
        "scorecard_episodes": card.episodes,
        "wall_s": wall,
        "seed": seed,
        "resumed_from_round": resumed_from,
        "warnings": warnings,
        "plan": plan.as_dict(),
        "architecture": arch.as_dict(),
        "accel": accel.as_dict(),
        "scorecard": card.as_dict(),
        "history": history,
        "versions": library_versions("torch"),
    }
    report_path = project.residual_dir / ("train_report_real.json" if real else "train_report.json")
    atomic_write_json(report_path, report)
    atomic_write_json(prog_path, {"status": "done", "seed": seed, "budget": budget, "history": history,
                                  "plan": plan.as_dict(), "version": version})
    return TrainResult(
        version=version,
        card=card,
        action=action,
        stop_reason=stop_reason,
        env_steps=steps_done,
        best_round=best_round,
        best_env_steps=best_steps,
        wall_s=wall,
        report_path=report_path,
        curve_path=curve_path,
        warnings=warnings,
        resumed_from=resumed_from,
    )


def plot_curve(history: list[dict[str, Any]], plan: Plan, threshold: float, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([h["env_steps_total"] for h in history])
    sr = np.array([h["success_rate"] if h["episodes"] else math.nan for h in history])
    cr = np.array([h["collisions"] / h["episodes"] if h["episodes"] else math.nan for h in history])
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    ax.plot(x, sr, "o-", label="success (training rollouts)", color="tab:blue")
    ax.plot(x, cr, "s--", label="collision", color="tab:red", alpha=0.7)
    ax.axhline(threshold, color="gray", ls=":", label=f"deploy threshold {threshold:.0%}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("rate per round")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.step(x, [h["level"] for h in history], where="post", color="tab:green", alpha=0.5, label="perturbation level")
    ax2.set_ylabel("perturbation level", color="tab:green")
    ax2.set_ylim(0, 1.05)
    ax.set_title(f"governed residual training [{label}]")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
