"""The governor: it plans a training run, reviews every round, and (via the scorecard) judges the result.

The client (``cadenza.residual.train``) only collects rollouts and runs the PPO step; the governor
decides hyperparameters, the curriculum, the budget, and when to stop. ``Governor`` is a protocol so
a shared governance service can replace :class:`LocalGovernor` later without touching the client.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class TaskProfile:
    obs_dim: int
    act_dim: int
    horizon: int
    num_envs: int
    device: str
    budget_steps: int
    target_level: float
    use_base: bool = True
    label: str = "proxy"
    control_hz: float = 50.0
    algorithm: str = "ppo"  # the learner the plan is for: "ppo", "sac", or "auto" (choose_algorithm picks)
    step_s: float = 0.0  # measured wall seconds of one env step (one env, the base acting); 0: not measured


@dataclass
class Plan:
    hyperparameters: dict[str, Any]  # PPOConfig / SACConfig fields the governor sets by name (the rest: defaults)
    budget_steps: int
    rounds: int
    curriculum: list[tuple[int, float]]  # (from env step, level), ascending
    plateau_window: int
    plateau_min_gain: float
    kl_blowup: float
    # the validation card (cadenza.residual.validation): every `validate_every` rounds at the target
    # level, on `validation_episodes` episodes of the validation block
    validate_every: int = 1
    validation_episodes: int = 500
    stop_margin: float = 0.01  # stop once a card passes every check with its worst gate cleared by this
    patience: int = 8  # ... or once this many validations in a row brought no better card
    # collisions as a constraint (Lagrangian): after each validation card the extra collision cost moves
    # by collision_lr * (card's collision rate - target), kept in [0, collision_cost_max]; target = the
    # base alone's collision rate on the validation block, or collision_target_share of
    # governance.max_collision_rate if lower (missions: 0.6, their base collides in ~40%)
    collision_lr: float = 10.0
    collision_cost_max: float = 5.0
    collision_target_share: float = 0.6
    algorithm: str = "ppo"  # which learner the hyperparameters are for
    validate_from: int = 0  # no card until after this many env steps (SAC's base phase: the actor is unchanged)

    @property
    def round_steps(self) -> int:
        """Env steps of one training round: ``num_envs * n_steps`` (both learners' configs name them so)."""
        return self.hyperparameters["n_steps"] * self.hyperparameters["num_envs"]

    def level_at(self, step: int) -> float:
        level = self.curriculum[0][1]
        for start, lv in self.curriculum:
            if step >= start:
                level = lv
        return level

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    action: Literal["continue", "stop"]
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


class Governor(Protocol):
    def plan(self, profile: TaskProfile) -> Plan: ...

    def review(self, history: list[dict[str, Any]], plan: Plan) -> Decision: ...


RAMP_BUDGET = 200_000  # the curriculum ramp ends by 30% of this many env steps (60,000) ...
RAMP_HORIZON = 350  # ... per this many ticks of episode horizon (a proxy dash's): longer episodes, longer ramp
# a residual's initial exploration (log std of delta) on MuJoCo, either learner: the real bases' feedback absorbs
# the small nudges of the proxy's -0.5 (PPO) and SAC's -1.0 (docs/real.md, "Training"; docs/config.md#sac)
MUJOCO_LOG_STD = -0.25

# algorithm = "auto": SAC where an env step costs at least this many seconds. SAC spends about 1 ms of updates
# per env step on one core (12 ms an update, 2 updates per 25-tick decision) against PPO's ~0.03 ms; at 2 ms a
# step its updates are under half the env's own cost, so needing fewer samples also means less wall time
# (a robot at 50 Hz: 20 ms a step; the MuJoCo quadruped 0.85 ms, the reacher 0.4 ms, the proxy 0.03 ms, all PPO)
SAC_MIN_STEP_S = 0.002
SAC_BASE_STEPS = 8192  # env steps SAC's base phase runs (no card: the actor is unchanged); docs/config.md#sac
SAC_WARMUP_UPDATES = 5000  # critic updates on the base phase's transitions before the actor moves
# a decision held at least this many ticks is learned from every tick it ran (SACConfig.every_tick): the dash's
# 25-tick decisions gain (5 seeds, 1 and 2 threads), the reacher's 5-tick ones did not (docs/config.md#sac)
SAC_EVERY_TICK_MIN_HOLD = 10

# label prefix -> (validate every N rounds at the target level, validation episodes), first match wins.
# Chosen so that validating costs about as much CPU as training or less (measured on 2 cores, one
# thread, docs/governance.md): 500 proxy dashes ~1.5 s against ~3 s per round; 200 missions ~35 s
# against ~2 s per round; 200 MuJoCo quadruped episodes ~27 s against ~7 s per round; 256 reacher
# episodes ~5 s against ~3 s per round.
VALIDATION_SCHEDULE = {
    "proxy:missions": (16, 200),
    "mujoco:rescue-dog": (6, 200),
    "mujoco:": (2, 256),
    "": (1, 1000),  # dashes: 1000 (~3 s), since a card of 500 is noisy enough (+-1.4 pts) to stop on a lucky round
}
# the labels whose schedule above was measured (the built-in tasks); any other task (a user's own, through
# [task.real]) takes its family's entry, and where its env step is dear (DEAR_STEP_S) its cards are spaced by
# their cost (validation_schedule)
MEASURED_SCHEDULES = ("proxy", "mujoco:rescue-dog", "mujoco:reacher")
DEAR_STEP_S = SAC_MIN_STEP_S  # from here an env step is dear: the line algorithm = "auto" picks SAC from


def has_measured_schedule(label: str) -> bool:
    """Whether ``label`` is a built-in task's, whose validation schedule was measured (``VALIDATION_SCHEDULE``)."""
    return any(label == m or label.startswith(m + ":") for m in MEASURED_SCHEDULES)


def spaced_by_cost(p: TaskProfile) -> bool:
    """Whether ``p``'s validation cards are spaced by their cost: a task with no measured schedule whose measured
    env step costs at least ``DEAR_STEP_S`` (``validation_schedule``)."""
    return not has_measured_schedule(p.label) and p.step_s >= DEAR_STEP_S


def validation_schedule(p: TaskProfile, batch: int, episodes: int | None = None) -> tuple[int, int, int]:
    """``(validate_every, validation_episodes, first_after)`` for a task whose rounds are ``batch`` env steps:
    no card before ``first_after`` training env steps (the plan's ``validate_from``).

    A built-in task, or one whose env step costs under ``DEAR_STEP_S`` (or was not measured), gets its family's
    entry in ``VALIDATION_SCHEDULE`` as it is. A task of the user's own whose step is dear (a heavy simulator, a
    robot) gets its cards spaced so that they cost no more env steps than the training between them: a card of
    ``episodes`` episodes can take ``episodes * horizon`` env steps, so it comes every ``ceil(that / batch)``
    rounds, the first after as many training env steps (and the last round's, as always). Where one card costs
    more than the whole budget there is no card: training runs to its budget and the scorecard judges the last
    round (docs/governance.md, "a dear task of your own")."""
    every, eps = next(v for k, v in VALIDATION_SCHEDULE.items() if p.label.startswith(k))
    eps = episodes or eps
    if not spaced_by_cost(p):
        return every, eps, 0
    spaced = max(every, math.ceil(eps * p.horizon / batch))
    return spaced, eps, spaced * batch


def choose_algorithm(p: TaskProfile) -> str:
    """``[residual] algorithm = "auto"``: "sac" when one env step costs at least ``SAC_MIN_STEP_S`` (samples are
    dear: a real robot, a heavy simulator), else "ppo" (docs/config.md#sac); an unmeasured cost means PPO."""
    return "sac" if p.use_base and p.step_s >= SAC_MIN_STEP_S else "ppo"


class LocalGovernor:
    """Offline governor with documented rules (docs/governance.md)."""

    def __init__(self, stop_margin: float = 0.01, validation_episodes: int | None = None,
                 validation_every: int | None = None) -> None:
        self.stop_margin = stop_margin
        self.validation_episodes = validation_episodes
        self.validation_every = validation_every  # pins the cadence (no spacing by cost)

    def plan(self, p: TaskProfile) -> Plan:
        if p.algorithm == "auto":
            p = replace(p, algorithm=choose_algorithm(p))
        n_steps = max(32, min(256, 8192 // p.num_envs))
        batch = n_steps * p.num_envs
        # only what the governor decides; every other PPO setting is PPOConfig's documented default
        # (cadenza.residual.ppo), which the trainer fills in by name: PPOConfig(**plan.hyperparameters)
        hp = {
            "num_envs": p.num_envs,
            "n_steps": n_steps,
            "gamma": 0.99 if p.horizon <= 400 else 0.995,
            "minibatch_size": max(256, batch // 4),
            # a residual explores gently around the base; a policy from scratch needs broad noise
            "init_log_std": -0.5 if p.use_base else 0.0,
            "critic_warmup_epochs": 10 if p.use_base else 0,
            # hold exploration noise for 0.2 s at 50 Hz: at 20 ms an independent nudge is undone by the
            # base's feedback before it can change the episode's outcome (measured: docs/governance.md)
            "noise_hold": max(1, round(0.2 * p.control_hz)),
        }
        ppo_batch = batch  # SAC's per-env-step rules below are PPO's, rescaled by the ratio of the rounds
        if p.algorithm == "sac":
            # off-policy (cadenza.residual.sac; measured in docs/config.md#sac): fewer envs and shorter rounds,
            # so the validation card looks every 1,024 env steps; a decision held for 0.5 s (at most a tenth
            # of an episode) is one transition; the base phase (SACConfig.base_steps) gets no card
            base_steps = min(SAC_BASE_STEPS, p.budget_steps // 5)  # a small budget: a shorter base phase ...
            hp = {"num_envs": min(p.num_envs, 16), "n_steps": 64, "gamma": hp["gamma"],
                  "decision_ticks": max(1, min(round(0.5 * p.control_hz), p.horizon // 10)),
                  "base_steps": base_steps,  # ... and a warm-up in proportion (5,000 critic updates for 8,192)
                  "critic_warmup_updates": max(1, round(SAC_WARMUP_UPDATES * base_steps / SAC_BASE_STEPS))}
            hp["every_tick"] = hp["decision_ticks"] >= SAC_EVERY_TICK_MIN_HOLD
            batch = hp["num_envs"] * hp["n_steps"]
        rounds = max(1, p.budget_steps // batch)  # the budget is a ceiling: no round may cross it
        # the ramp spans 30% of the budget, but at most of RAMP_BUDGET: a large budget is a ceiling for the
        # validation card to stop under, and must not keep the policy off the target level longer. The cap
        # counts episodes rather than env steps: it grows with the horizon, so a task of long episodes
        # (missions: 5000 ticks, 300k steps, as the mission runs that deployed had) gets as many
        # episodes per stage as dashes get (350 ticks, 60k steps); measured in docs/results.md#robustness
        ramp_cap = RAMP_BUDGET * max(1.0, p.horizon / RAMP_HORIZON)
        ramp_end = int(0.3 * min(p.budget_steps, ramp_cap))
        start = round(0.5 * p.target_level, 3)
        stages = 3
        curriculum = [(0, start)] + [
            (int(ramp_end * i / stages), round(start + (p.target_level - start) * i / stages, 3))
            for i in range(1, stages + 1)
        ]
        if p.algorithm == "sac":
            # off-policy: the replay keeps every level's transitions, and a card is taken only at the target
            # level, so a ramp would only delay the first card; SAC trains at the target from the first round
            curriculum = [(0, p.target_level)]
        if p.use_base and p.label.startswith("mujoco:"):
            # MuJoCo residuals (docs/real.md, "Training"): explore wider (std 0.78 of the bound), since
            # the base's feedback absorbs small nudges; and train at the target level from the first
            # round, since the real bases still succeed ~100% at half the level and the ramp's rounds
            # teach nothing (mujoco:rescue-dog, 300k steps: 77.4% at log std -1.0, 88.6% at -0.5,
            # 88.0-92.6% at -0.25 over 3 seeds; 94.2% without the ramp on the seed that gave 88.0%). SAC
            # too: its reacher at SACConfig's -1.0 deployed 3 of 4 seeds within 50k, at -0.25 12 of 12 runs
            # (seeds 0-7, 1 and 2 threads) at 15k-36k env steps (docs/config.md#sac)
            hp["init_log_std"] = MUJOCO_LOG_STD
            curriculum = [(0, p.target_level)]
        every, episodes, first_after = validation_schedule(p, batch, self.validation_episodes) \
            if p.use_base else (0, 0, 0)
        if p.use_base and self.validation_every:
            every, first_after = self.validation_every, 0
        lagrange: dict[str, float] = {"collision_lr": 10.0, "collision_cost_max": 5.0, "collision_target_share": 1.0}
        patience = 12 if every == 1 else 8  # a card every round is noisier per round: wait longer for a better one
        if p.label == "proxy:missions":  # the base alone collides in ~40% of the missions: aim at 60% of the limit
            lagrange["collision_target_share"] = 0.6
        plateau_window, validate_from = 5, first_after
        if p.algorithm == "sac":
            # a SAC round is 1,024 env steps, PPO's 8,192 (64 envs), and both take a card every `every` rounds:
            # the multiplier moves as fast per env step as PPO's, patience waits as many env steps, and the
            # plateau rule looks at as many episodes (a SAC round finishes about 3 dashes)
            per_ppo_round = ppo_batch / batch
            lagrange["collision_lr"] /= per_ppo_round
            patience = round(patience * per_ppo_round)
            plateau_window = round(plateau_window * per_ppo_round)
            validate_from = max(validate_from, hp["base_steps"])
        return Plan(hyperparameters=hp, algorithm=p.algorithm, budget_steps=p.budget_steps, rounds=rounds,
                    curriculum=curriculum,
                    plateau_window=plateau_window, plateau_min_gain=0.01, kl_blowup=0.5, validate_every=every,
                    validation_episodes=episodes, stop_margin=self.stop_margin,
                    patience=patience, validate_from=validate_from, **lagrange)

    @staticmethod
    def validates(plan: Plan, history: list[dict[str, Any]]) -> bool:
        """Whether the round just finished gets a validation card: at the target level, every
        ``validate_every`` rounds counted from the first round at the target, and the last round."""
        if plan.validate_every <= 0:
            return False
        target = plan.curriculum[-1][1]
        def counts(h: dict[str, Any]) -> bool:  # at the target level, and after the base phase (validate_from)
            return h["level"] >= target and h["env_steps_total"] > plan.validate_from

        at_target = [h for h in history if counts(h)]
        if not at_target or not counts(history[-1]):
            return False
        last = history[-1]["env_steps_total"] + plan.round_steps > plan.budget_steps
        return last or (len(at_target) - 1) % plan.validate_every == 0

    def review(self, history: list[dict[str, Any]], plan: Plan) -> Decision:
        """Decide after a round. ``history`` holds one dict per round (RoundStats + env_steps_total, level)."""
        cur = history[-1]
        warnings = []
        if cur.get("mean_abs_delta", 0.0) > 0.5:
            warnings.append(f"residual saturation: mean |delta| is {cur['mean_abs_delta']:.0%} of its bound; "
                            "the base may be too weak for this task")
        numbers = [cur.get(k, 0.0) for k in ("approx_kl", "value_loss", "policy_loss", "std")]
        if any(not math.isfinite(x) for x in numbers):
            return Decision("stop", "divergence: a loss or the policy std is NaN/inf", warnings)
        if cur.get("approx_kl", 0.0) > plan.kl_blowup:
            return Decision("stop", f"divergence: KL blow-up ({cur['approx_kl']:.3f} > {plan.kl_blowup})", warnings)
        if cur.get("val_passes") and cur.get("val_margin", -1.0) >= plan.stop_margin:
            again = (f", confirmed on {cur['val_confirm']['val_episodes']} other episodes,"
                     if "val_confirm" in cur else "")
            return Decision("stop", f"validation card passes every gate{again} with margin {cur['val_margin']:+.1%} "
                            f"(>= {plan.stop_margin:.1%}) at {cur['env_steps_total']:,} env steps", warnings)
        cards = [h for h in history if "val_margin" in h]
        if len(cards) > plan.patience and plan.patience > 0:
            best = max(range(len(cards)), key=lambda i: cards[i]["val_margin"])
            if len(cards) - 1 - best >= plan.patience:
                return Decision("stop", f"no better validation card in the last {plan.patience} validations "
                                f"(best {cards[best]['val_margin']:+.1%} at {cards[best]['env_steps_total']:,} env "
                                "steps)", warnings)
        if cur["env_steps_total"] + plan.round_steps > plan.budget_steps:
            return Decision("stop", f"budget reached ({cur['env_steps_total']:,} env steps)", warnings)
        # plateau: only judged at the target level, over two full windows of rounds
        target = plan.curriculum[-1][1]
        at_target = [h for h in history if h["level"] >= target and h["episodes"] > 0]
        w = plan.plateau_window
        if len(at_target) >= 2 * w and cur["env_steps_total"] >= 0.5 * plan.budget_steps:
            def rate(rows: list[dict[str, Any]]) -> float:
                return sum(r["successes"] for r in rows) / max(1, sum(r["episodes"] for r in rows))

            recent, before = rate(at_target[-w:]), rate(at_target[-2 * w:-w])
            if recent - before < plan.plateau_min_gain and recent >= 0.95:
                return Decision("stop", f"success plateau at {recent:.1%} (gain {recent - before:+.1%} over the "
                                f"last {w} rounds < {plan.plateau_min_gain:.0%})", warnings)
        return Decision("continue", "", warnings)
