"""Sharded rollout collection for PPO: the vectorised task split into shards that step whole segments.

With ``[scale] rollout_workers = N`` (or ``train --rollout-workers N``), N > 1, the ``num_envs``
environments of a training are split into N shards (``np.array_split`` sizes, in order). Each shard
(:class:`RolloutShard`) owns its slice of the task, its own copy of the base policy and of the actor,
and its own exploration-noise generator; per round it receives the actor's weights once, steps
``n_steps`` vector steps with them and returns numpy arrays: the features the policy saw, the raw
residual samples, their log-probabilities, rewards, dones, raw observations, the features of final
observations cut by a time limit, the features of the last observation, and episode counts. The
learner stays in the driver: it runs the critic on the returned features, computes GAE and updates.

Each shard is a process of its own: a spawned process on this machine (``--backend local``, so N
shards also use N local cores) or a Ray actor with one CPU (``--backend ray``). **The same seed and N
give the same numbers on either backend**: shard i is seeded from ``SeedSequence(seed).spawn(N)[i]``,
every shard process starts on one thread (``OMP_NUM_THREADS=1``, one torch thread: MKL and oneDNN
choose their kernels, and so their float rounding, by the thread count they start with), and the
driver concatenates the shards' arrays in shard order. Across different CPUs the bits can differ, as
for any training. N = 1 is the unsharded collection of :class:`cadenza.residual.ppo.PPO` (other
numbers than N > 1: one noise generator for all envs, the driver's threads).

A shard is not checkpointed: a resumed run builds fresh shards (reset envs), as the unsharded
trainer resets its task. On Ray, a shard whose actor dies mid-round stops the command with one line;
every finished round is checkpointed, so the same command resumes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.errors import CadenzaError
from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch


def shard_seeds(seed: int, shards: int) -> list[int]:
    """One seed per shard, from one ``SeedSequence`` (independent streams, fixed by ``seed`` and N)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(shards)]


def shard_sizes(num_envs: int, shards: int) -> list[int]:
    return [len(a) for a in np.array_split(np.arange(num_envs), shards)]


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard needs to build itself (plain data: it travels to a Ray actor)."""

    project_root: str
    real: bool
    reward: str
    num_envs: int
    seed: int
    arch: ResidualArch
    n_steps: int
    noise_hold: int
    gamma: float
    bootstrap_truncation: bool
    init_log_std: float


class RolloutShard:
    """One slice of the task stepped with the actor's weights; see the module docstring for the contract."""

    def __init__(self, spec: ShardSpec) -> None:
        from cadenza.base.loader import load_base
        from cadenza.project.config import load_project
        from cadenza.tasks.factory import base_source, make_task

        _start_single_threaded()
        project = load_project(Path(spec.project_root))
        self.spec, self.arch = spec, spec.arch
        self.task = make_task(project, num_envs=spec.num_envs, real=spec.real, seed=spec.seed,
                              reward=spec.reward)  # type: ignore[arg-type]
        self.base = load_base(base_source(project, spec.real), project.root, spec.arch.act_dim)
        self.actor = ResidualActor(spec.arch, init_log_std=spec.init_log_std)
        self.actor.eval()
        self.rng = torch.Generator(device="cpu").manual_seed(spec.seed)
        self.obs, _ = self.task.reset(seed=spec.seed)
        self.prev_delta = np.zeros((spec.num_envs, spec.arch.act_dim))
        self.noise: torch.Tensor | None = None

    def _features(self, obs: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        a_base = self.base(obs)
        x = self.actor.features(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(a_base, dtype=torch.float32))
        return x, a_base

    @torch.no_grad()
    def collect(self, actor_state: dict[str, torch.Tensor], level: float, collision_cost: float) -> dict[str, Any]:
        """Step ``n_steps`` vector steps with these weights at this curriculum level."""
        t0 = time.perf_counter()
        s, k = self.spec, self.arch.act_dim
        self.actor.load_state_dict(actor_state)
        self.task.set_level(level)
        T, n = s.n_steps, s.num_envs
        xs, us, logps = [], [], []
        rews = np.zeros((T, n), np.float32)
        dones = np.zeros((T, n), np.float32)
        raw_obs = np.empty((T, n, self.arch.obs_dim), np.float32)
        trunc_t: list[np.ndarray] = []
        trunc_i: list[np.ndarray] = []
        trunc_x: list[torch.Tensor] = []
        eps = succ = coll = 0
        ret_sum = abs_delta = 0.0
        std = self.actor.log_std.exp()
        alpha = self.arch.alpha if self.arch.use_base else 1.0
        rate_limit = self.arch.rate_limit if self.arch.use_base else None
        for t in range(T):
            x, a_base = self._features(self.obs)
            mean = self.actor.net(x)
            if t % s.noise_hold == 0 or self.noise is None or self.noise.shape != mean.shape:
                self.noise = torch.randn(mean.shape, generator=self.rng)
            u = mean + std * self.noise
            logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
            un = u.numpy().astype(np.float64)
            gate = np.clip(un[:, k:], 0.0, 1.0) if self.arch.gate else None
            out = control_law(a_base, un[:, :k], alpha=alpha, gate=gate, prev_delta=self.prev_delta,
                              rate_limit=rate_limit)
            abs_delta += float(np.abs(out.delta).mean())
            raw_obs[t] = self.obs
            obs, r, term, trunc, info = self.task.step(out.action)
            done = term | trunc
            r = r.astype(np.float32).copy()
            if s.bootstrap_truncation and trunc.any():
                idx = np.flatnonzero(trunc)
                trunc_t.append(np.full(len(idx), t))
                trunc_i.append(idx)
                trunc_x.append(self._features(info["final_obs"][trunc])[0])
            self.prev_delta = np.where(done[:, None], 0.0, out.delta)
            if collision_cost and done.any():
                r[done & info["collision"]] -= collision_cost
            if done.any():
                eps += int(done.sum())
                succ += int(info["success"][done].sum())
                coll += int(info["collision"][done].sum())
                ret_sum += float(info["episode"]["r"][done].sum())
            xs.append(x)
            us.append(u)
            logps.append(logp)
            rews[t], dones[t] = r, done
            self.obs = obs
        in_dim = xs[0].shape[-1]
        return {
            "x": torch.stack(xs).numpy(), "u": torch.stack(us).numpy(), "logp": torch.stack(logps).numpy(),
            "rew": rews, "done": dones, "raw_obs": raw_obs,
            "trunc_t": np.concatenate(trunc_t) if trunc_t else np.zeros(0, np.int64),
            "trunc_i": np.concatenate(trunc_i) if trunc_i else np.zeros(0, np.int64),
            "trunc_x": torch.cat(trunc_x).numpy() if trunc_x else np.zeros((0, in_dim), np.float32),
            "last_x": self._features(self.obs)[0].numpy(),
            "episodes": eps, "successes": succ, "collisions": coll, "return_sum": ret_sum,
            "abs_delta_sum": abs_delta, "compute_s": time.perf_counter() - t0,
        }

    def ready(self) -> bool:
        """True once built (a Ray actor answers it after its constructor ran)."""
        return True

    def close(self) -> None:
        self.task.close()


SHARD_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _start_single_threaded() -> None:
    """A shard's process runs on one thread from its first op: MKL and oneDNN pick their kernels by the
    thread count they start with, and a kernel picked at 2 threads rounds differently from one picked at
    1, so every shard process (local or Ray) starts the same way and computes the same bits."""
    torch.set_num_threads(1)


def _shard_process(conn: Any, spec: ShardSpec) -> None:
    """A local shard's process: build the shard, then answer ``collect`` / ``close`` requests on ``conn``."""
    _start_single_threaded()
    try:
        shard = RolloutShard(spec)
    except BaseException as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            cmd, args = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if cmd == "close":
            break
        try:
            conn.send(("ok", shard.collect(*args)))
        except BaseException as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
    shard.close()


class _LocalShards:
    """Shards in spawned processes on this machine, one each, started single-threaded (see above)."""

    def __init__(self, specs: list[ShardSpec]) -> None:
        import multiprocessing as mp
        import os

        ctx = mp.get_context("spawn")
        saved = {k: os.environ.get(k) for k in SHARD_THREAD_ENV}
        os.environ.update(SHARD_THREAD_ENV)  # the children inherit it at start
        try:
            self.conns, self.procs = [], []
            for spec in specs:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_shard_process, args=(child, spec), daemon=True)
                proc.start()
                self.conns.append(parent)
                self.procs.append(proc)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            self._answers()
        except BaseException:
            self.close()
            raise

    def _answers(self) -> list[Any]:
        out = []
        for i, c in enumerate(self.conns):
            try:
                kind, value = c.recv()
            except EOFError:
                raise CadenzaError(f"rollout shard {i} (a local process) exited unexpectedly") from None
            if kind == "error":
                raise CadenzaError(f"rollout shard {i}: {value}")
            out.append(value)
        return out

    def collect(self, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        for c in self.conns:
            c.send(("collect", args))
        return self._answers()

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                c.send(("close", None))
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


class ShardPool:
    """N shards behind one interface: ``set_level``, ``collect(actor_state, collision_cost)`` (results in
    shard order), ``close``. Each shard is a process of its own, started single-threaded: a spawned local
    process, or with ``ray`` a Ray actor (one CPU) at ``address`` (None: a local instance started for the
    pool and stopped by ``close``)."""

    def __init__(self, specs: list[ShardSpec], level: float, *, ray: bool = False, address: str | None = None) -> None:
        self.level = level
        self.num_envs = sum(s.num_envs for s in specs)
        self.backend = "ray" if ray else "local"
        self.cluster: dict[str, Any] = {}
        self._session: Any = None
        if not ray:
            self._local = _LocalShards(specs)
            return
        from cadenza.scale.ray_map import cluster_info, ray_session

        self._session = ray_session(address, len(specs))
        self._ray = self._session.__enter__()
        opts = {"num_cpus": 1, "max_restarts": 0, "runtime_env": {"env_vars": SHARD_THREAD_ENV}}
        remote = self._ray.remote(**opts)(RolloutShard)
        self._actors = [remote.remote(s) for s in specs]
        from ray.exceptions import RayError

        try:  # built (imports, task, base) before round 0
            self._ray.get([a.ready.remote() for a in self._actors])
        except RayError as e:
            self.close()
            raise CadenzaError(f"a Ray rollout worker could not start: {str(e).strip().splitlines()[-1][:300]}") \
                from None
        self.cluster = {**cluster_info(self._ray), "address": address or "local"}

    def set_level(self, level: float) -> None:
        self.level = level

    def collect(self, actor_state: dict[str, torch.Tensor], collision_cost: float) -> list[dict[str, Any]]:
        if self.backend == "local":
            return self._local.collect((actor_state, self.level, collision_cost))
        from ray.exceptions import RayError

        ref = self._ray.put(actor_state)  # the weights go out once per round, through the object store
        try:
            return self._ray.get([a.collect.remote(ref, self.level, collision_cost) for a in self._actors])
        except RayError as e:
            raise CadenzaError(f"a Ray rollout worker was lost mid-round ({type(e).__name__}); every finished "
                               "round is checkpointed: run the same train command again to resume") from None

    def close(self) -> None:
        if self.backend == "local":
            self._local.close()
            return
        for a in self._actors:
            self._ray.kill(a)
        self._session.__exit__(None, None, None)
