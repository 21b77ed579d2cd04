"""``cadenza env residual train``: a governed training on the shared round loop.

One job per module: this one sets the training up and hooks into the shared round loop
(:func:`cadenza.residual.loop.run_rounds`: collect and update with PPO, or SAC with ``[residual]
algorithm = "sac"``, the governor's review) the
validation card, the collision multiplier, the best round and the checkpoints; ``checkpoint`` keeps
every round and resumes an interrupted run; ``finalise`` registers the kept round, scores it, moves
the baseline and writes the report; ``plot`` draws the learning curve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from cadenza.accel import configure
from cadenza.base.loader import load_base
from cadenza.errors import ArtefactError
from cadenza.governance.governor import (
    SAC_MIN_STEP_S,
    Decision,
    Governor,
    LocalGovernor,
    Plan,
    TaskProfile,
    has_measured_schedule,
    spaced_by_cost,
)
from cadenza.project.config import Project
from cadenza.residual.checkpoint import load_checkpoint, resume, run_dir, save_best, save_round
from cadenza.residual.finalise import TrainResult, finalise
from cadenza.residual.loop import run_rounds
from cadenza.residual.network import ResidualArch
from cadenza.residual.plot import plot_curve
from cadenza.residual.policy import ResidualController
from cadenza.residual.ppo import PPO, PPOConfig, update_workload
from cadenza.residual.profile import env_step_seconds
from cadenza.residual.rollout import ShardPool, shard_specs
from cadenza.residual.sac import SAC, SACConfig, sac_arch, sac_workload
from cadenza.residual.scaffold import arch_from_spec
from cadenza.residual.validation import Validator, confirmed
from cadenza.scale.backend import ScaleSettings
from cadenza.tasks.factory import base_source, make_task
from cadenza.tracking import Tracker

__all__ = ["TrainResult", "plot_curve", "run_dir", "train_residual"]


class Learner(NamedTuple):
    """What ``[residual] algorithm`` names: the learner, its config, what its updates cost for the acceleration
    layer, and the architecture it trains from the configured one."""

    cls: Any
    config: Any
    workload: Any
    arch: Callable[[ResidualArch], ResidualArch]


LEARNERS: dict[str, Learner] = {"ppo": Learner(PPO, PPOConfig, update_workload, lambda a: a),
                                "sac": Learner(SAC, SACConfig, sac_workload, sac_arch)}


def card_notes(plan: Plan, profile: TaskProfile, *, pinned: bool) -> list[str]:
    """What ``train`` says of a card schedule the governor spaced by the env's cost (none for a measured one)."""
    if plan.validate_every <= 0 or pinned or not spaced_by_cost(profile):
        return []
    cost = f"an env step takes {profile.step_s * 1e3:.2f} ms"
    if plan.validate_from >= plan.budget_steps:
        return [f"no validation card: on this task one card of {plan.validation_episodes} episodes can take "
                f"{plan.validation_episodes * profile.horizon:,} env steps ({cost}), more than the budget; training "
                "runs to its budget and the scorecard judges the last round (governance.validation_episodes and "
                "validation_every set the cards)"]
    return [f"validation cards of {plan.validation_episodes} episodes every {plan.validate_every} rounds "
            f"({plan.validate_every * plan.round_steps:,} env steps): {cost}, so the cards cost no "
            "more env steps than training"]


def train_residual(project: Project, *, steps: int | None = None, seed: int | None = None, device: str = "auto",
                   real: bool = False, fresh: bool = False, governor: Governor | None = None,
                   on_round: Any = None, on_stage: Any = None, scale: ScaleSettings | None = None,
                   tracker: Tracker | None = None) -> TrainResult:
    """Run a governed training; ``on_round(history_row, plan)`` is called after every round (progress),
    ``on_stage(text)`` when a stage starts, ``on_look(look)`` through ``on_stage`` after each scorecard look.
    ``scale``: where the rollouts run (``rollout_workers`` > 1 shards them; :mod:`cadenza.residual.rollout`).
    ``tracker``: gets the plan and settings, every round's row (step: env steps) and the scorecard
    (:mod:`cadenza.tracking`)."""
    scale = scale or ScaleSettings()
    tracker = tracker or Tracker()
    rc = project.config.residual
    g = project.config.governance
    seed = rc.seed if seed is None else seed
    budget = steps or rc.steps
    arch = arch_from_spec(project, real)
    base = load_base(base_source(project, real), project.root, arch.act_dim)
    accel = configure(device)
    governor = governor or LocalGovernor(stop_margin=g.stop_margin, validation_episodes=g.validation_episodes,
                                         validation_every=g.validation_every)
    profile_task = make_task(project, num_envs=1, real=real)
    label = profile_task.spec.label
    # what one env step costs: "auto" picks the learner by it, and a user's own task spaces its cards by it
    timed = rc.algorithm == "auto" or not has_measured_schedule(label)
    profile = TaskProfile(obs_dim=arch.obs_dim, act_dim=arch.act_dim, horizon=profile_task.spec.horizon,
                          num_envs=project.config.task.num_envs, device=accel.device, budget_steps=budget,
                          target_level=project.config.task.level, use_base=True, label=label,
                          control_hz=profile_task.spec.control_hz, algorithm=rc.algorithm,
                          step_s=env_step_seconds(profile_task, base) if timed else 0.0)
    profile_task.close()
    plan: Plan = governor.plan(profile)
    if rc.algorithm == "auto" and on_stage is not None:
        on_stage(f"algorithm auto: {plan.algorithm} (an env step takes {profile.step_s * 1e3:.2f} ms; SAC is "
                 f"picked from {SAC_MIN_STEP_S * 1e3:.0f} ms; docs/config.md#sac)")
    if on_stage is not None:
        for line in card_notes(plan, profile, pinned=g.validation_every is not None):
            on_stage(line)
    learner, config, workload, learner_arch = LEARNERS[plan.algorithm]
    trained_arch = learner_arch(arch)
    if on_stage is not None and arch.gate and not trained_arch.gate:
        on_stage(f"{plan.algorithm} trains the residual without its gate (residual.gate is PPO's; docs/config.md#sac)")
    arch = trained_arch
    cfg = config(**plan.hyperparameters)
    scale.check_shards(cfg.num_envs, "parallel envs the plan runs", plan.algorithm)
    accel = configure(device, workload=workload(arch, cfg, budget))

    rdir = run_dir(project, real)
    ckpt_path, prog_path, best_path = rdir / "checkpoint.pt", rdir / "progress.json", rdir / "best.pt"
    history, ckpt = resume(prog_path, ckpt_path, seed=seed, budget=budget, fresh=fresh)
    resumed_from = len(history)
    steps_done = history[-1]["env_steps_total"] if history else 0
    learner_seed = seed + 1000 * resumed_from
    pool: ShardPool | None = None
    if scale.rollout_workers > 1:
        specs = shard_specs(str(project.root), real=real, reward=rc.reward, arch=arch, cfg=cfg, seed=learner_seed,
                            shards=scale.rollout_workers)
        pool = ShardPool(specs, plan.level_at(steps_done), ray=scale.backend == "ray", address=scale.ray_address)
        task: Any = pool
        ppo = learner(arch, cfg, pool, base, device=accel.device, seed=learner_seed, accel=accel, rollout=pool)
    else:
        task = make_task(project, num_envs=cfg.num_envs, level=plan.level_at(steps_done), real=real, seed=seed,
                         reward=rc.reward)
        ppo = learner(arch, cfg, task, base, device=accel.device, seed=learner_seed, accel=accel)
    try:
        return _train(project, ppo=ppo, task=task, pool=pool, scale=scale, base=base, arch=arch, accel=accel,
                      plan=plan, profile=profile, governor=governor, history=history, ckpt=ckpt, seed=seed,
                      budget=budget, steps_done=steps_done, resumed_from=resumed_from, real=real, rdir=rdir,
                      paths=(ckpt_path, prog_path, best_path), on_round=on_round, on_stage=on_stage,
                      tracker=tracker)
    finally:
        task.close()


def _train(project: Project, *, ppo: Any, task: Any, pool: ShardPool | None, scale: ScaleSettings, base: Any,
           arch: Any, accel: Any, plan: Plan, profile: TaskProfile, governor: Governor, history: list[dict[str, Any]],
           ckpt: Any, seed: int, budget: int, steps_done: int, resumed_from: int, real: bool, rdir: Any,
           paths: tuple[Any, Any, Any], on_round: Any, on_stage: Any, tracker: Tracker) -> TrainResult:
    """The rounds, the validation cards and the checkpoints, then :func:`finalise`."""
    g = project.config.governance
    tracker.params({"command": "env residual train", "seed": seed, "budget_steps": budget, "real": real,
                    "resumed_from_round": resumed_from, "algorithm": plan.algorithm, "plan": plan.as_dict(),
                    "architecture": arch.as_dict(), "accel": accel.as_dict(), "scale": scale.training()})
    ckpt_path, prog_path, best_path = paths
    if ckpt is not None:
        try:
            ppo.load_state_dict(ckpt)
        except (KeyError, RuntimeError) as e:  # saved by another learner layout (another version or plan)
            raise ArtefactError(f"{ckpt_path}: the interrupted run's checkpoint does not fit this learner "
                                f"({type(e).__name__}); re-run with --fresh") from None
    ppo.collision_cost = history[-1].get("collision_cost", 0.0) if history else 0.0
    validator = Validator(project, base, episodes=plan.validation_episodes, real=real)
    cards = [h for h in history if "val_margin" in h]
    best = max(cards, key=lambda h: h["val_margin"]) if cards else None
    best_state = load_checkpoint(best_path) if best is not None else None
    t0 = time.perf_counter()
    wall_before = history[-1]["wall_s"] if history else 0.0
    # the cards' env steps so far (outside the training budget; a resumed run adds to the interrupted one's)
    last = history[-1] if history else {}
    val_steps_before, val_wall_before = last.get("validation_env_steps", 0), last.get("validation_wall_s", 0.0)
    latest_warning: dict[str, str] = {}  # one line per kind of warning (the text before ':'), the latest

    def on_row(row: dict[str, Any]) -> None:
        nonlocal best, best_state
        row["wall_s"] = wall_before + time.perf_counter() - t0
        row["collision_cost"] = ppo.collision_cost
        if pool is not None:  # the rollout's wall time, and what Ray added over the slowest shard
            row.update(ppo.rollout_timing)
        if not LocalGovernor.validates(plan, history):
            return
        controller = ResidualController(ppo.actor.eval(), "candidate")
        card = validator.score(controller)
        if card.passes and card.margin >= plan.stop_margin:  # it would stop training: confirm it on other episodes
            again = validator.score(controller, confirm=True)
            row.update(val_first=card.as_dict(), val_confirm=again.as_dict())
            card = confirmed(card, again)
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
            save_best(best_path, best_state)

    def after_review(row: dict[str, Any], decision: Decision) -> None:
        row["validation_env_steps"] = val_steps_before + validator.env_steps  # every row, with a card or not
        row["validation_wall_s"] = val_wall_before + validator.wall_s
        for w in decision.warnings:
            latest_warning[w.split(":")[0]] = f"{w} (round {row['round']})"
        save_round(ckpt_path, prog_path, ppo.state_dict(), seed=seed, budget=budget, history=history,
                   plan=plan.as_dict())
        tracker.metrics(row, step=row["env_steps_total"])
        if on_round is not None:
            on_round(row, plan)

    steps_done, decision = run_rounds(ppo, task, plan, governor, history, steps_done=steps_done, on_row=on_row,
                                      after_review=after_review)
    stop_reason = decision.reason
    warnings = list(latest_warning.values())
    wall = wall_before + time.perf_counter() - t0
    where = scale.training(pool.cluster if pool is not None else None)

    res = finalise(project, ppo=ppo, base=base, arch=arch, accel=accel, plan=plan, profile=profile,
                    history=history, best=best, best_state=best_state, steps_done=steps_done, seed=seed,
                    budget=budget, stop_reason=stop_reason, warnings=warnings, wall=wall,
                    resumed_from=resumed_from, real=real, rdir=rdir, prog_path=prog_path, on_stage=on_stage,
                    scale=where)
    tracker.metrics({"scorecard": res.card.as_dict(), "kept_round": res.best_round}, step=res.env_steps)
    tracker.tag("verdict", res.card.verdict)
    tracker.tag("version", res.version)
    for path in (res.report_path, res.curve_path):
        tracker.artifact(path)
    return res
