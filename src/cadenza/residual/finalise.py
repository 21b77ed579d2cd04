"""The end of a governed training: register the kept round, score it on held-out episodes, let the
verdict move the baseline, draw the learning curve and write the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza.accel import AccelSettings
from cadenza.base.loader import BasePolicy
from cadenza.governance.governor import Plan, TaskProfile
from cadenza.governance.registry import open_registry
from cadenza.governance.scorecard import Scorecard
from cadenza.project.config import Project
from cadenza.residual.checkpoint import mark_done
from cadenza.residual.network import ResidualArch
from cadenza.residual.plot import plot_curve
from cadenza.residual.policy import ResidualController, save_policy
from cadenza.residual.ppo import PPO
from cadenza.residual.sac import SAC
from cadenza.residual.scoring import apply_verdict, score_residual
from cadenza.utils.io import atomic_write_json
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
    # env steps run on the task outside the training budget: the validation cards (and the base's run for
    # them), and the held-out scorecard (candidate, base alone and baseline, every look)
    validation_env_steps: int
    validation_wall_s: float  # part of wall_s
    scorecard_env_steps: int


def finalise(project: Project, *, ppo: PPO | SAC, base: BasePolicy, arch: ResidualArch, accel: AccelSettings,
             plan: Plan, profile: TaskProfile, history: list[dict[str, Any]], best: dict[str, Any] | None,
             best_state: dict[str, Any] | None, steps_done: int, seed: int, budget: int, stop_reason: str,
             warnings: list[str], wall: float, resumed_from: int, real: bool, rdir: Path, prog_path: Path,
             on_stage: Any = None, scale: dict[str, Any] | None = None) -> TrainResult:
    """Register the round with the best validation card (the last round without one), score it, report."""
    g = project.config.governance
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
    reg = open_registry(project)
    version = reg.register("residual", {"policy.pt": tmp_policy}, meta)
    controller = ResidualController(actor.eval(), version)
    if on_stage is not None:
        on_stage(f"scoring {version} on held-out block 0 (looks of {g.eval_episodes} up to {g.max_eval_episodes} "
                 "episodes)")
    card, _ = score_residual(project, controller, base, real=real, candidate_version=version, block=0,
                             on_look=None if on_stage is None else lambda lk: on_stage(lk.line()))
    validation_steps = int(history[-1].get("validation_env_steps", 0))
    validation_wall = float(history[-1].get("validation_wall_s", 0.0))
    scorecard_steps = card.env_steps
    action = apply_verdict(project, card, version, promote=True)

    curve_path = project.residual_dir / ("learning_curve_real.png" if real else "learning_curve.png")
    plot_curve(history, plan, project.config.governance.success_threshold, curve_path, profile.label)
    report = {
        "kind": "cadenza.residual.train_report", "project": project.name, "task": profile.label,
        "version": version, "verdict": card.verdict, "action": action, "stop_reason": stop_reason,
        "env_steps": steps_done, "best_round": best_round, "best_env_steps": best_steps,
        "heldout_block": card.block, "scorecard_episodes": card.episodes,
        # env steps on the task outside the training budget (env_steps): the cards and the held-out scorecard
        "validation_env_steps": validation_steps, "validation_wall_s": validation_wall,
        "scorecard_env_steps": scorecard_steps, "wall_s": wall, "seed": seed,
        "resumed_from_round": resumed_from,
        "warnings": warnings, "plan": plan.as_dict(), "algorithm": plan.algorithm,
        "algorithm_asked": project.config.residual.algorithm, "env_step_s": profile.step_s,
        plan.algorithm: ppo.cfg.as_dict(), "architecture": arch.as_dict(),
        "accel": accel.as_dict(), "scorecard": card.as_dict(), "history": history,
        "versions": library_versions("torch"),
        # where the rollouts ran: backend, Ray address, rollout shards, cluster nodes and CPUs
        "scale": scale or {"backend": "local", "ray_address": None, "rollout_workers": 1},
    }
    report_path = project.residual_dir / ("train_report_real.json" if real else "train_report.json")
    atomic_write_json(report_path, report)
    mark_done(prog_path, seed=seed, budget=budget, history=history, plan=plan.as_dict(), version=version)
    return TrainResult(version=version, card=card, action=action, stop_reason=stop_reason, env_steps=steps_done,
                       best_round=best_round, best_env_steps=best_steps, wall_s=wall, report_path=report_path,
                       curve_path=curve_path, warnings=warnings, resumed_from=resumed_from,
                       validation_env_steps=validation_steps, validation_wall_s=validation_wall,
                       scorecard_env_steps=scorecard_steps)
