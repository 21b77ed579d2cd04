"""The bench's arms, one training run per (arm, seed), each in its own process when the bench runs in parallel.

* ``residual``: governed PPO on the frozen base through the same round loop as ``cadenza env
  residual train`` (:func:`cadenza.residual.loop.run_rounds`: same architecture, governor plan,
  curriculum and review); the bench hooks its periodic evaluations into the loop where ``train``
  hooks its validation card, so this arm stops on the governor's budget, plateau and divergence
  rules, not on a validation margin, and keeps its last round; nothing is registered or promoted;
* ``full``: the same PPO and governor with no base (``ResidualArch.use_base = False``): a full policy
  from scratch with the same hidden layers, ``a = clip(u)``; the governor gives it its from-scratch
  settings (broad initial exploration, no critic warm-up on a base rollout);
* ``sb3``: Stable-Baselines3 PPO with its default hyperparameters (``MlpPolicy``), on the same task
  batch through :class:`cadenza.bench.sb3_adapter.TaskVecEnv`, with SB3's default rollout of 2048
  samples per update split over the same number of parallel envs, and the same curriculum;
* ``residual-sac``: the ``residual`` arm with the off-policy learner (``[residual] algorithm = "sac"``:
  :class:`cadenza.residual.sac.SAC`, the governor's SAC plan); reported beside the others, and, being a
  residual, never one of the from-scratch peers the verdict compares against;
* ``sb3-sac``: Stable-Baselines3 SAC (``MlpPolicy``) on the same batched task and curriculum: the standard
  off-policy from-scratch peer, with the SAC residual's update-to-data ratio and initial entropy temperature
  (:func:`sb3_settings`; SB3's defaults otherwise);
* ``sb3-sac-utd1``: the same SB3 SAC at one gradient step per env step, what SB3's defaults give on one env
  (``train_freq`` 1, ``gradient_steps`` 1): 12.5x the residual's updates on a dash, at about 14x ``sb3-sac``'s CPU
  per env step (measured in docs/results.md, "SB3 SAC at one update per env step").

Only training is timed (wall and process CPU seconds); the periodic evaluations are the bench's
instrument and are timed separately.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cadenza.bench.measure import due, eval_targets, sustained

ArmKind = Literal["residual", "residual-sac", "full", "sb3", "sb3-sac", "sb3-sac-utd1"]
Reward = Literal["sparse", "dense"]
ARM_KINDS: tuple[ArmKind, ...] = ("residual", "residual-sac", "full", "sb3", "sb3-sac", "sb3-sac-utd1")
SB3_KINDS = ("sb3", "sb3-sac", "sb3-sac-utd1")
SB3_SAC_KINDS = ("sb3-sac", "sb3-sac-utd1")
RESIDUAL_KINDS = ("residual", "residual-sac")  # arms on the base: never the verdict's from-scratch peers
SB3_ROLLOUT = 2048  # SB3 PPO's default samples per update (n_steps 2048 x 1 env)


NAMES = {"residual": "residual (ours)", "residual-sac": "residual SAC (ours)", "full": "full RL (ours)",
         "sb3": "full RL (SB3 PPO)", "sb3-sac": "full RL (SB3 SAC)",
         "sb3-sac-utd1": "full RL (SB3 SAC, 1 update per step)"}


@dataclass(frozen=True)
class ArmSpec:
    kind: ArmKind
    reward: Reward
    id: str  # "residual", "full", "sb3"; "full-dense", "sb3-sparse", ... when both rewards run
    label: str


def arm_specs(arms: list[str], full_reward: str, residual_reward: Reward) -> list[ArmSpec]:
    """``--arms`` and ``--full-reward`` to the list of arms (residual first); raises ValueError on bad input.

    ``full_reward`` is ``sparse``, ``dense``, ``both``, or ``same`` (the residual's training reward).
    """
    names = [a.strip() for a in arms if a.strip()]
    bad = [a for a in names if a not in ARM_KINDS]
    if bad:
        raise ValueError(f"--arms: unknown arm {bad[0]!r}; expected a comma-separated subset of {','.join(ARM_KINDS)}")
    if "residual" not in names:
        raise ValueError("--arms: the bench compares against the residual arm; include 'residual'")
    if full_reward not in ("same", "sparse", "dense", "both"):
        raise ValueError(f"--full-reward: expected sparse, dense or both, got {full_reward!r}")
    rewards: list[Reward] = (["sparse", "dense"] if full_reward == "both" else
                             [residual_reward] if full_reward == "same" else [full_reward])  # type: ignore[list-item]
    out = [ArmSpec("residual", residual_reward, "residual", NAMES["residual"])]
    if "residual-sac" in names:
        out.append(ArmSpec("residual-sac", residual_reward, "residual-sac", NAMES["residual-sac"]))
    for kind in ("full", *SB3_KINDS):
        if kind in names:
            for r in rewards:
                two = len(rewards) > 1
                out.append(ArmSpec(kind, r, f"{kind}-{r}" if two else kind,  # type: ignore[arg-type]
                                   f"{NAMES[kind]}, {r} reward" if two else NAMES[kind]))
    return out


def sb3_import_error() -> str | None:
    """None when stable-baselines3 imports, else why not (one line)."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as e:
        return f"stable-baselines3 is not installed ({e}); pip install -e '.[bench]' to run the sb3 arm"
    return None


@dataclass(frozen=True)
class Job:
    project_root: str
    arm_id: str
    kind: ArmKind
    reward: Reward
    seed: int
    steps: int
    device: str
    real: bool
    eval_episodes: int  # per periodic evaluation
    final_episodes: int
    threads: int | None = None  # torch threads in this run's process (None: the acceleration layer's choice)
    # a JSONL file this run appends each evaluation to as it comes ({"arm", "seed", "point"}; None: none), so a long
    # run's curve can be read while it runs and is not lost with it
    evals_log: str | None = None
    # stop the run once two consecutive evaluations reach this success rate (measure.sustained; None: run the budget):
    # the sample-efficiency bench needs a from-scratch run only up to its sustained steps
    stop_when_sustained: float | None = None


class Clock:
    """Accumulates wall and process-CPU seconds of the blocks it times."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def run_job(job: Job) -> dict[str, Any]:
    """Train one arm with one seed and return its measurements (a plain dict, picklable)."""
    from cadenza.accel import configure
    from cadenza.project.config import load_project

    if job.threads is not None:  # a parallel bench worker (its own process): the acceleration layer reads this
        os.environ["CADENZA_NUM_THREADS"] = str(job.threads)
    accel = configure(job.device)
    project = load_project(Path(job.project_root))
    run = _run_sb3 if job.kind in SB3_KINDS else _run_ours
    res = run(project, job, accel.device)
    res.update({"arm": job.arm_id, "kind": job.kind, "reward": job.reward, "seed": job.seed, "device": accel.device,
                "threads": _threads()})
    res.setdefault("accel", accel.as_dict())
    return res


def _threads() -> int:
    import torch

    return torch.get_num_threads()


class _Evaluator:
    """Deterministic evaluation on the held-out episodes at the project's target level (same for every arm); every
    evaluation goes to the job's ``evals_log`` as it is made."""

    def __init__(self, project: Any, real: bool, base: Any, job: Job) -> None:
        from cadenza.residual.scoring import EVAL_SEED, eval_chunk
        from cadenza.tasks.factory import make_task

        self.project, self.real, self.base, self.job = project, real, base, job
        self.seed, self.chunk = EVAL_SEED, eval_chunk(project, real)
        level = project.config.task.level
        self.make = lambda n: make_task(project, num_envs=n, level=level, real=real)
        self.clock = Clock()

    def __call__(self, controller: Any, env_steps: int, episodes: int) -> dict[str, Any]:
        from cadenza.residual.evaluate import evaluate

        with self.clock:
            s = evaluate(self.make, self.base, controller, episodes=episodes, seed=self.seed, chunk=self.chunk)
        point = {"env_steps": int(env_steps), "episodes": s.episodes, "successes": s.successes,
                 "collisions": s.collisions, "success_rate": s.success_rate, "collision_rate": s.collision_rate,
                 "mean_return": s.mean_return}
        _log_eval(self.job, point)
        return point


def _log_eval(job: Job, point: dict[str, Any]) -> None:
    """Append one evaluation to the job's ``evals_log`` (one line, one write: parallel runs may share the file)."""
    if job.evals_log is not None:
        line = json.dumps({"arm": job.arm_id, "seed": job.seed, "point": point}) + "\n"
        with open(job.evals_log, "a", encoding="utf-8") as f:
            f.write(line)


def _sustained_now(job: Job, curve: list[dict[str, Any]]) -> bool:
    """Whether the job stops on its curve (``stop_when_sustained``): two consecutive evaluations at the rate."""
    return job.stop_when_sustained is not None and sustained(curve, job.stop_when_sustained) is not None


def _sustained_reason(job: Job) -> str:
    return f"sustained {job.stop_when_sustained:.0%} on two evaluations"


class _StopOnceSustained:
    """A governor that says stop once the run's curve has sustained the job's rate, else what ``inner`` says."""

    def __init__(self, inner: Any, job: Job, curve: list[dict[str, Any]]) -> None:
        self.inner, self.job, self.curve = inner, job, curve

    def plan(self, profile: Any) -> Any:
        return self.inner.plan(profile)

    def review(self, history: list[dict[str, Any]], plan: Any) -> Any:
        from cadenza.governance.governor import Decision

        if _sustained_now(self.job, self.curve):
            return Decision("stop", _sustained_reason(self.job))
        return self.inner.review(history, plan)


def full_arch(arch: Any) -> Any:
    """The residual architecture turned into a from-scratch policy of the same size: no base, no gate, no bound."""
    # alpha 1 and a rate limit of 2 (wider than the [-1, 1] range of delta) make the control law the identity
    # clip(u), which is what PPO applies to a policy without a base
    return replace(arch, use_base=False, gate=False, alpha=1.0, rate_limit=2.0)


def _plan(project: Any, arch: Any, device: str, budget: int, real: bool, algorithm: str = "ppo") -> Any:
    from cadenza.governance.governor import LocalGovernor, TaskProfile
    from cadenza.tasks.factory import make_task

    t = make_task(project, num_envs=1, real=real)
    spec = t.spec
    t.close()
    profile = TaskProfile(obs_dim=spec.obs_dim, act_dim=spec.act_dim, horizon=spec.horizon,
                          num_envs=project.config.task.num_envs, device=device, budget_steps=budget,
                          target_level=project.config.task.level, use_base=arch.use_base, label=spec.label,
                          control_hz=spec.control_hz, algorithm=algorithm)
    governor = LocalGovernor()
    return governor, governor.plan(profile)


def _run_ours(project: Any, job: Job, device: str) -> dict[str, Any]:
    from cadenza.accel import configure
    from cadenza.base.loader import load_base
    from cadenza.residual.loop import run_rounds
    from cadenza.residual.policy import ResidualController
    from cadenza.residual.scaffold import arch_from_spec
    from cadenza.residual.train import LEARNERS
    from cadenza.tasks.factory import base_source, make_task

    arch = arch_from_spec(project, job.real)
    base = load_base(base_source(project, job.real), project.root, arch.act_dim)
    if job.kind == "full":
        arch = full_arch(arch)
    policy_base = base if arch.use_base else None
    governor, plan = _plan(project, arch, device, job.steps, job.real,
                           algorithm="sac" if job.kind == "residual-sac" else "ppo")
    learner, config, workload, learner_arch = LEARNERS[plan.algorithm]
    arch = learner_arch(arch)  # the architecture the learner trains (SAC: no gate), as ``train`` does
    cfg = config(**plan.hyperparameters)
    accel = configure(job.device, workload=workload(arch, cfg, job.steps))  # as ``train`` decides
    evaluator = _Evaluator(project, job.real, policy_base, job)
    targets = eval_targets(job.steps)
    clock = Clock()
    with clock:
        task = make_task(project, num_envs=cfg.num_envs, level=plan.level_at(0), real=job.real, reward=job.reward,
                         seed=job.seed)
        ppo = learner(arch, cfg, task, policy_base, device=device, seed=job.seed, accel=accel)
    curve = [evaluator(ResidualController(ppo.actor), 0, job.eval_episodes)]
    history: list[dict[str, Any]] = []

    def evaluate_when_due(row: dict[str, Any], decision: Any) -> None:
        before = history[-2]["env_steps_total"] if len(history) > 1 else 0
        if decision.action != "stop" and due(targets, before, row["env_steps_total"]):
            curve.append(evaluator(ResidualController(ppo.actor), row["env_steps_total"], job.eval_episodes))

    # a sustained curve stops the run at the next review (one round after the evaluation that sustained it)
    steps, decision = run_rounds(ppo, task, plan, _StopOnceSustained(governor, job, curve), history,
                                 after_review=evaluate_when_due, clock=clock)
    task.close()
    final = evaluator(ResidualController(ppo.actor), steps, job.final_episodes)
    curve.append(final)
    return {"env_steps": steps, "wall_s": clock.wall, "cpu_s": clock.cpu, "eval_wall_s": evaluator.clock.wall,
            "eval_cpu_s": evaluator.clock.cpu, "stop_reason": decision.reason, "curve": curve, "final": final,
            "hyperparameters": cfg.as_dict(), "curriculum": plan.curriculum, "architecture": arch.as_dict(),
            "rounds": len(history), "accel": accel.as_dict()}


def sac_updates_per_env_step(decision_ticks: int) -> float:
    """Gradient steps per env step the SAC residual takes on a task whose governor plans ``decision_ticks``-tick held
    decisions: ``SACConfig.utd`` per decision (a dash: 2 per 25 ticks, 0.08; the MuJoCo reacher: 2 per 5, 0.4)."""
    from cadenza.residual.sac import SACConfig

    return SACConfig.utd / max(1, decision_ticks)


def sb3_settings(num_envs: int, kind: str = "sb3", updates_per_env_step: float = 0.0) -> dict[str, Any]:
    """What an SB3 arm sets; everything else is SB3's default. SAC collects one vector step per update round
    (its default ``train_freq`` of 1), so its rollout is ``num_envs`` env steps, and takes as many gradient steps
    per env step as the SAC residual on the same task (``updates_per_env_step``, from
    :func:`sac_updates_per_env_step`: 5 per vector step of 64 envs on a dash, not SB3's one) with its entropy
    temperature starting where the SAC residual's does (docs/bench.md, "The arms"). ``sb3-sac-utd1``: one gradient
    step per env step (``num_envs`` per vector step), whatever ``updates_per_env_step`` says."""
    if kind == "sb3-sac-utd1":
        updates_per_env_step = 1.0
    if kind in SB3_SAC_KINDS:
        if updates_per_env_step <= 0:
            raise ValueError("the sb3-sac arm needs the SAC residual's updates per env step")
        # SB3's "auto" temperature starts at 1.0; a dash step earns ~0.004 of dense reward, so the entropy bonus was
        # the whole objective (0% success, 99% timeouts at 330k on seed 0). Start at SACConfig.init_temperature and
        # let SB3 tune it from there ("auto_<start>")
        from cadenza.residual.sac import SACConfig

        return {"policy": "MlpPolicy", "n_steps": 1, "ent_coef": f"auto_{SACConfig.init_temperature}",
                "gradient_steps": max(1, round(updates_per_env_step * num_envs))}
    return {"policy": "MlpPolicy", "n_steps": max(1, SB3_ROLLOUT // num_envs)}


def _run_sb3(project: Any, job: Job, device: str) -> dict[str, Any]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3 import SAC as SB3SAC

    from cadenza.bench.sb3_adapter import SB3Controller, TaskVecEnv
    from cadenza.residual.scaffold import arch_from_spec
    from cadenza.tasks.factory import make_task

    residual_arch = arch_from_spec(project, job.real)
    arch = full_arch(residual_arch)
    _, plan = _plan(project, arch, device, job.steps, job.real)  # its curriculum only
    n = project.config.task.num_envs
    upe = 0.0
    if job.kind == "sb3-sac":  # the update ratio the SAC residual's plan gives this task
        _, sac_plan = _plan(project, residual_arch, device, job.steps, job.real, "sac")
        upe = sac_updates_per_env_step(sac_plan.hyperparameters["decision_ticks"])
    settings = sb3_settings(n, job.kind, upe)
    evaluator = _Evaluator(project, job.real, None, job)
    targets = eval_targets(job.steps)
    clock = Clock()
    with clock:
        task = make_task(project, num_envs=n, level=plan.level_at(0), real=job.real, reward=job.reward, seed=job.seed)
        venv = TaskVecEnv(task)
        venv.seed(job.seed)
        if job.kind in SB3_SAC_KINDS:
            model = SB3SAC(settings["policy"], venv, ent_coef=settings["ent_coef"],
                           gradient_steps=settings["gradient_steps"], seed=job.seed, device=device, verbose=0)
        else:
            model = SB3PPO(settings["policy"], venv, n_steps=settings["n_steps"], seed=job.seed, device=device,
                           verbose=0)
    ctl = SB3Controller(model)
    curve = [evaluator(ctl, 0, job.eval_episodes)]
    # the budget is a ceiling, as for the governed arms: whole rollouts of n_steps x num_envs, none crossing it
    rollout = settings["n_steps"] * n
    budget = max(rollout, job.steps // rollout * rollout)
    stages = [s for s, _ in plan.curriculum if 0 < s < budget]
    stops = sorted({*stages, *(t for t in targets if 0 < t < budget), budget})
    stopped_early = False
    for stop in stops:
        if model.num_timesteps >= stop:
            continue
        before = model.num_timesteps
        with clock:
            task.set_level(plan.level_at(before))
            model.learn(total_timesteps=stop - before, reset_num_timesteps=before == 0)
        if model.num_timesteps < budget and due(targets, before, model.num_timesteps):
            curve.append(evaluator(ctl, model.num_timesteps, job.eval_episodes))
            if _sustained_now(job, curve):
                stopped_early = True
                break
    venv.close()
    stop_reason = (f"{_sustained_reason(job) if stopped_early else 'budget reached'} "
                   f"({model.num_timesteps:,} env steps)")
    final = evaluator(ctl, model.num_timesteps, job.final_episodes)
    curve.append(final)
    hp = _sb3_hyperparameters(model, settings, n)
    return {"env_steps": int(model.num_timesteps), "wall_s": clock.wall, "cpu_s": clock.cpu,
            "eval_wall_s": evaluator.clock.wall, "eval_cpu_s": evaluator.clock.cpu,
            "stop_reason": stop_reason, "curve": curve, "final": final,
            "hyperparameters": hp, "curriculum": plan.curriculum, "architecture": {"note": "SB3 MlpPolicy"},
            "rounds": int(model.num_timesteps // rollout)}


def _sb3_hyperparameters(model: Any, settings: dict[str, Any], n: int) -> dict[str, Any]:
    """What an SB3 model ran with (its defaults included), for the report."""
    hp: dict[str, Any] = {"policy": settings["policy"], "net_arch": str(model.policy.net_arch), "num_envs": n,
                          "learning_rate": float(model.learning_rate), "gamma": model.gamma,
                          "batch_size": model.batch_size}
    if hasattr(model, "n_epochs"):  # PPO
        hp.update(n_steps=model.n_steps, n_epochs=model.n_epochs, gae_lambda=model.gae_lambda,
                  clip_range=float(model.clip_range(1.0)), ent_coef=model.ent_coef, vf_coef=model.vf_coef,
                  max_grad_norm=model.max_grad_norm, normalize_advantage=model.normalize_advantage,
                  use_sde=model.use_sde)
    else:  # SAC
        hp.update(buffer_size=model.buffer_size, learning_starts=model.learning_starts, tau=model.tau,
                  train_freq=str(model.train_freq), gradient_steps=model.gradient_steps,
                  ent_coef=str(model.ent_coef), target_entropy=float(model.target_entropy))
    return hp


def job_dict(job: Job) -> dict[str, Any]:
    return asdict(job)
