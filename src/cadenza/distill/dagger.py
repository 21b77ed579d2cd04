"""The teacher (frozen base + promoted residual, through the control law) and DAgger training of the student.

DAgger (Ross et al., 2011) in rounds. Round 0: the teacher drives and labels every state it visits.
Round ``i > 0``: at every step each env is driven by the teacher with probability ``beta_i =
beta_decay ** i`` and by the current student otherwise, and the teacher labels *every* visited state
(it runs alongside in shadow mode, keeping its own rate-limit state). The labelled states of all
rounds are aggregated and the student is refitted on the whole set after each round. Plain
behaviour cloning is the special case of one round: the student only ever sees states the teacher
visits, so its own small errors lead it to states it was never taught about, and they compound.

The teacher acts deterministically (the residual's mean action); the perturbation level is the
task's configured level, so the student sees the same robots it is evaluated on.

When the student will also ship as an 8-bit file, ``quant_aware_epochs`` more epochs follow the last
round's fit on ``mse(fp32) + mse(int8 mirror)`` (``cadenza.distill.quant_aware``), so the weights
are the ones whose rounded version still imitates the teacher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cadenza.base.loader import BasePolicy, load_base
from cadenza.distill.quant_aware import quantized_raw
from cadenza.distill.student import Student, StudentArch
from cadenza.errors import ArtefactError
from cadenza.governance.registry import open_registry
from cadenza.project.config import Project
from cadenza.residual.combine import BasePlusResidual
from cadenza.residual.policy import ResidualController, load_policy
from cadenza.tasks.factory import base_source
from cadenza.tasks.interface import Task

COLLECT_SEED = 50_021  # rollouts for distillation; never the evaluation seed (1000003)
TEACHERS = ("residual", "base")


# ---------------------------------------------------------------------------------------------- teacher
class Teacher(BasePlusResidual):
    """Frozen base, plus the residual through the control law when there is one (deterministic)."""

    base: BasePolicy

    @property
    def kind(self) -> str:
        return "residual" if self.residual is not None else "base"

    @property
    def label(self) -> str:
        return f"base + residual {self.residual.version}" if self.residual is not None else "base alone"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "residual_version": self.residual.version if self.residual else None,
                "base": self.base.source, "label": self.label}


def load_teacher(project: Project, *, kind: str = "residual", residual_version: str | None = None,
                 real: bool = False, obs_dim: int, act_dim: int) -> Teacher:
    """The teacher a student is distilled from: the promoted residual (or ``residual_version``) on the
    project's base, or with ``kind="base"`` the base alone. ArtefactError (one line) when there is none."""
    if kind not in TEACHERS:
        raise ArtefactError(f"--teacher: expected one of {', '.join(TEACHERS)}, got {kind!r}")
    base = load_base(base_source(project, real), project.root, act_dim)
    if kind == "base":
        return Teacher(base)
    reg = open_registry(project)
    version = residual_version or reg.baseline("residual")
    if version is None:
        raise ArtefactError(
            f"{project.root}: no promoted residual to distill (the teacher is base + the promoted residual); "
            f"train one with `cadenza env residual train {project.root}` (promoted on DEPLOY), "
            "or distill the base alone with --teacher base")
    meta = reg.verify("residual", version).get("metadata", {})
    if "real" in meta and bool(meta["real"]) != real:
        where = "the real simulator" if meta["real"] else "the proxy"
        raise ArtefactError(f"residual {version} was trained on {where}; distill it "
                            f"{'with' if meta['real'] else 'without'} --real")
    actor, _ = load_policy(reg.path("residual", version, "policy.pt"))
    if (actor.arch.obs_dim, actor.arch.act_dim) != (obs_dim, act_dim):
        raise ArtefactError(f"residual {version} is for obs {actor.arch.obs_dim} / action {actor.arch.act_dim}, "
                            f"the task has obs {obs_dim} / action {act_dim}")
    return Teacher(base, ResidualController(actor, version))


# ---------------------------------------------------------------------------------------------- DAgger
@dataclass
class DaggerConfig:
    rounds: int = 4  # 1 = plain behaviour cloning
    epochs: int = 60  # passes over the aggregated data after the last round
    interim_epochs: int | None = None  # after each earlier round; None = a quarter of ``epochs`` (at least 1)
    envs: int = 256  # parallel envs per collection round
    steps: int | None = None  # env steps per env and round; None = one task horizon
    batch_size: int = 1024
    lr: float = 3e-3  # Adam, cosine-decayed to lr / 100 within each round's fit
    beta_decay: float = 0.5  # teacher share of the driving in round i: beta_decay ** i (round 0: 1)
    val_share: float = 0.05  # held-out share of every round's samples (reported, never trained on)
    ignore_action_echo: bool = True  # the student ignores observation entries that repeat the last action
    quant_aware_epochs: int = 0  # after the last round: epochs on mse(fp32) + mse(int8 mirror); 0 = none
    quant_aware_lr: float = 1e-3  # Adam, cosine-decayed to lr / 100
    seed: int = 0

    def beta(self, round_: int) -> float:
        return 1.0 if round_ == 0 else float(self.beta_decay ** round_)

    def epochs_of(self, round_: int) -> int:
        if round_ == self.rounds - 1:
            return self.epochs
        return self.interim_epochs if self.interim_epochs is not None else max(1, self.epochs // 4)


@dataclass
class DaggerRound:
    round: int
    beta: float
    samples: int  # labelled states collected this round
    total_samples: int  # aggregated so far
    student_share: float  # share of the steps the student drove
    episodes: int  # episodes that ended during collection
    success_rate: float  # of those episodes (mixed driver)
    on_policy_mse: float | None  # before refitting: current student vs teacher on this round's states
    train_mse: float
    val_mse: float
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DaggerResult:
    student: Student
    rounds: list[DaggerRound]
    val_obs: np.ndarray  # held-out observations (for parity checks)
    ignored_obs: list[int] = field(default_factory=list)  # observation entries the student ignores
    config: dict[str, Any] = field(default_factory=dict)
    quant_aware: dict[str, Any] | None = None  # held-out MSE (fp32 and int8 mirror) before and after fine-tuning

    @property
    def samples(self) -> int:
        return self.rounds[-1].total_samples if self.rounds else 0


@torch.no_grad()
def student_actor(student: Student) -> Callable[[np.ndarray], np.ndarray]:
    """The torch student as ``obs[N, d] (numpy) -> action[N, k] (float64)``, on the CPU."""
    cpu = student.cpu().eval()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return cpu(torch.as_tensor(obs, dtype=torch.float32)).numpy().astype(np.float64)

    return act


@dataclass
class Rollout:
    """One collection round, time-major: ``obs[T, N, d]``, teacher ``labels[T, N, k]``, the ``actions``
    actually sent, and ``done[T, N]`` (the episode ended at that step; the next observation is a new one)."""

    obs: np.ndarray
    labels: np.ndarray
    actions: np.ndarray
    done: np.ndarray
    student_share: float
    episodes: int
    success_rate: float

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        d, k = self.obs.shape[-1], self.labels.shape[-1]
        return self.obs.reshape(-1, d), self.labels.reshape(-1, k)


def collect(task: Task, teacher: Teacher, student: Callable[[np.ndarray], np.ndarray] | None, *, beta: float,
            steps: int, seed: int, rng: np.random.Generator) -> Rollout:
    """Roll out the beta-mixture of teacher and student (per step and env); the teacher labels every state."""
    obs, _ = task.reset(seed=seed)
    teacher.reset()
    n = obs.shape[0]
    xs, ys, acts, dones = [], [], [], []
    student_steps = episodes = successes = 0
    for _ in range(steps):
        label = teacher.act(obs)
        if student is None or beta >= 1.0:
            action = label
        else:
            by_student = rng.random(n) >= beta
            student_steps += int(by_student.sum())
            action = np.where(by_student[:, None], student(obs), label)
        xs.append(obs.astype(np.float32))
        ys.append(label.astype(np.float32))
        acts.append(action.astype(np.float32))
        obs, _, term, trunc, info = task.step(action)
        done = term | trunc
        dones.append(done)
        if done.any():
            teacher.reset(done)
            episodes += int(done.sum())
            successes += int(info["success"][done].sum())
    return Rollout(obs=np.stack(xs), labels=np.stack(ys), actions=np.stack(acts), done=np.stack(dones),
                   student_share=student_steps / (n * steps), episodes=episodes,
                   success_rate=successes / episodes if episodes else float("nan"))


def action_echo_dims(roll: Rollout, threshold: float = 0.97) -> list[int]:
    """Observation entries that repeat the previous action: correlation >= ``threshold`` between
    ``obs[t + 1, j]`` and some ``action[t, i]`` within episodes.

    A student that can read its own last command learns to copy it (the teacher's actions change
    slowly, so that is the cheapest way to a small training loss) and then reacts late in closed loop:
    the "copycat" failure of behaviour cloning. The student ignores these entries.
    """
    keep = ~roll.done[:-1]
    nxt, prev = roll.obs[1:][keep].astype(np.float64), roll.actions[:-1][keep].astype(np.float64)
    if len(nxt) < 3:
        return []
    xs, ps = nxt.std(0), prev.std(0)
    x = (nxt - nxt.mean(0)) / np.where(xs > 1e-9, xs, 1.0)
    a = (prev - prev.mean(0)) / np.where(ps > 1e-9, ps, 1.0)
    corr = (x.T @ a) / len(x)
    corr[xs <= 1e-9, :] = 0.0
    corr[:, ps <= 1e-9] = 0.0
    return [int(j) for j in np.flatnonzero(corr.max(1) >= threshold)]


def fit(student: Student, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
        gen: torch.Generator, quant_aware: bool = False) -> float:
    """Minimise the mean squared error between the student's unbounded output and the teacher's action
    (targets lie inside the bounds, so the clamp never hides an error); with ``quant_aware`` the loss is
    that error plus the int8 mirror's (``quant_aware.quantized_raw``). Returns the last epoch's loss."""
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    n = x.shape[0]
    per_epoch = max(1, -(-n // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * per_epoch, eta_min=lr / 100)
    last = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        total = 0.0
        for i in range(per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = torch.mean((student.raw(x[idx]) - y[idx]) ** 2)
            if quant_aware:
                loss = loss + torch.mean((quantized_raw(student, x[idx]) - y[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        last = total / n
    student.eval()
    return last


@torch.no_grad()
def mse(student: Student, x: torch.Tensor, y: torch.Tensor, *, int8: bool = False) -> float:
    """Mean squared error of the unbounded output (of the int8 mirror with ``int8``) against ``y``."""
    if x.shape[0] == 0:
        return float("nan")
    out = quantized_raw(student, x) if int8 else student.raw(x)
    return float(torch.mean((out - y) ** 2))


def run_dagger(make_task: Callable[[int], Task], teacher: Teacher, arch: StudentArch, cfg: DaggerConfig, *,
               device: str = "cpu", on_round: Callable[[DaggerRound], None] | None = None,
               shards: Any = None) -> DaggerResult:
    """Collect, aggregate and fit for ``cfg.rounds`` rounds; see the module docstring. ``shards``: the
    collection's shard workers (:mod:`cadenza.distill.rollout_shards`), or None to collect in one piece."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    student = Student(arch)
    task = make_task(cfg.envs if shards is None else 1)  # with shards: only the horizon is read here
    steps = cfg.steps or task.spec.horizon
    train_x: list[np.ndarray] = []
    train_y: list[np.ndarray] = []
    val_x: list[np.ndarray] = []
    val_y: list[np.ndarray] = []
    rounds: list[DaggerRound] = []
    ignored: list[int] = []
    quant: dict[str, Any] | None = None
    try:
        for r in range(cfg.rounds):
            t0 = time.perf_counter()
            beta = cfg.beta(r)
            round_seed = COLLECT_SEED + 7919 * r + cfg.seed
            if shards is None:
                driver = student_actor(student) if r > 0 else None
                roll = collect(task, teacher, driver, beta=beta, steps=steps, seed=round_seed, rng=rng)
            else:
                from cadenza.distill.rollout_shards import merge

                state = {k: v.detach().cpu() for k, v in student.state_dict().items()} if r > 0 else None
                roll = merge(shards.call("collect", state, beta, steps, round_seed))
            x, y = roll.flat()
            if r == 0:
                ignored = action_echo_dims(roll) if cfg.ignore_action_echo else []
                student.set_normaliser(x.mean(0), x.std(0), ignore=ignored)
            on_policy = mse(student, torch.from_numpy(x), torch.from_numpy(y)) if r > 0 else None
            held = rng.random(len(x)) < cfg.val_share
            train_x.append(x[~held])
            train_y.append(y[~held])
            val_x.append(x[held])
            val_y.append(y[held])
            xt = torch.from_numpy(np.concatenate(train_x)).to(device)
            yt = torch.from_numpy(np.concatenate(train_y)).to(device)
            student.to(device)
            train_mse = fit(student, xt, yt, epochs=cfg.epochs_of(r), batch_size=cfg.batch_size, lr=cfg.lr, gen=gen)
            vx = torch.from_numpy(np.concatenate(val_x)).to(device)
            vy = torch.from_numpy(np.concatenate(val_y)).to(device)
            stats = DaggerRound(round=r, beta=beta, samples=len(x), total_samples=sum(len(a) for a in train_x + val_x),
                               student_share=roll.student_share, episodes=roll.episodes,
                               success_rate=roll.success_rate, on_policy_mse=on_policy,
                               train_mse=train_mse, val_mse=mse(student, vx, vy), wall_s=time.perf_counter() - t0)
            if r == cfg.rounds - 1 and cfg.quant_aware_epochs > 0:
                before = {"fp32": stats.val_mse, "int8": mse(student, vx, vy, int8=True)}
                fit(student, xt, yt, epochs=cfg.quant_aware_epochs, batch_size=cfg.batch_size,
                    lr=cfg.quant_aware_lr, gen=gen, quant_aware=True)
                after = {"fp32": mse(student, vx, vy), "int8": mse(student, vx, vy, int8=True)}
                stats.val_mse, stats.wall_s = after["fp32"], time.perf_counter() - t0
                quant = {"epochs": cfg.quant_aware_epochs, "val_mse_before": before, "val_mse_after": after}
            student.cpu()
            rounds.append(stats)
            if on_round is not None:
                on_round(stats)
    finally:
        task.close()
    cfg_d = asdict(cfg)
    cfg_d["steps"] = steps
    return DaggerResult(student=student.cpu().eval(), rounds=rounds, val_obs=np.concatenate(val_x),
                        ignored_obs=ignored, config=cfg_d, quant_aware=quant)


def on_policy_error(make_task: Callable[[int], Task], teacher: Teacher, student: Student, *, envs: int, steps: int,
                    seed: int) -> float:
    """Mean squared action error of the student on the states it reaches driving alone (teacher labels)."""
    task = make_task(envs)
    try:
        x, y = collect(task, teacher, student_actor(student), beta=0.0, steps=steps, seed=seed,
                       rng=np.random.default_rng(seed)).flat()
    finally:
        task.close()
    return float(np.mean((student_actor(student)(x) - y) ** 2))
