"""Any Gymnasium env as a cadenza :class:`~cadenza.tasks.interface.Task`: N copies stepped in a loop.

Vectorisation: a plain in-process loop over N single envs (not ``AsyncVectorEnv``): the machines
this runs on have two cores, MuJoCo steps take tens of microseconds, and subprocess workers would
spend more on pickling than on physics. The loop is the same-step autoreset a
``SyncVectorEnv(autoreset_mode=SAME_STEP)`` gives, written out so that each env can carry its own
perturbation draws, random stream, success rule and episode bookkeeping.

Actions come in [-1, 1] and are mapped linearly onto each env's ``Box`` action range; observations
go out as float32. ``info`` carries ``success`` / ``collision`` (bool arrays), and on steps where
an env finished, ``final_obs`` / ``_final_obs`` and ``episode`` (``r``, ``l``, ``_r``) as the proxy
does. ``success`` is only ever true on an episode's last step (it is the episode's outcome).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from cadenza.project.config import PerturbationSpec
from cadenza.tasks.interface import BatchedTaskBase, TaskSpec, check_finite
from cadenza.tasks.real import perturb

Outcome = Callable[[np.ndarray, dict[str, Any]], Any]


def model_view(env: gym.Env) -> perturb.ModelView | None:
    """The MuJoCo model/data behind an env, if it has them."""
    inner = env.unwrapped
    model, data = getattr(inner, "model", None), getattr(inner, "data", None)
    if model is None or data is None or type(model).__module__.split(".")[0] != "mujoco":
        return None
    dt = float(getattr(inner, "dt", model.opt.timestep))
    return perturb.ModelView(model, data, dt)


def time_limit(env: gym.Env) -> int | None:
    """The episode step limit of an env: its ``TimeLimit`` wrapper's, else its registered spec's."""
    e: Any = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.TimeLimit):
            return int(e._max_episode_steps)
        e = e.env
    spec = getattr(env, "spec", None)
    return getattr(spec, "max_episode_steps", None)


class _Slot:
    """One env with its perturbations, random stream and episode counters."""

    def __init__(self, env: gym.Env, specs: Sequence[PerturbationSpec], obs_dim: int) -> None:
        self.env = env
        self.view = model_view(env)
        self.perts = perturb.build(specs, self.view, obs_dim)
        self.nominal = perturb.NominalModel(self.view.model) if self.view is not None else None
        self.rng = np.random.default_rng(0)
        self.t = 0
        self.ret = 0.0

    def reset(self, level: float, seed: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        if self.nominal is not None:
            self.nominal.restore()
        for p in self.perts:
            p.draw(self.rng, level)
        for p in self.perts:
            p.apply_model()
        obs, info = self.env.reset(seed=seed)
        self.t, self.ret = 0, 0.0
        return self._obs(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        for p in self.perts:
            action = p.before_step(action, self.rng)
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        return self._obs(obs), float(r), bool(term), bool(trunc), info

    def _obs(self, obs: Any) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float64).reshape(-1)
        for p in self.perts:
            o = p.after_obs(o, self.rng)
        return o


class RealTask(BatchedTaskBase):
    """N Gymnasium envs behind the cadenza Task protocol (same-step autoreset)."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        *,
        name: str,
        num_envs: int = 8,
        level: float = 1.0,
        reward: Literal["sparse", "dense"] = "sparse",
        seed: int = 0,
        perturbations: Sequence[PerturbationSpec] = (),
        success_fn: Outcome | None = None,
        collision_fn: Outcome | None = None,
        horizon: int | None = None,
    ) -> None:
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward must be 'sparse' or 'dense', got {reward!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.reward_mode = reward
        self.success_fn, self.collision_fn = success_fn, collision_fn
        self._seed = int(seed)
        self.set_level(level)
        first = make_env()
        obs_space, act_space = first.observation_space, first.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"needs a flat Box observation space, got {obs_space}")
        if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
            raise ValueError(f"needs a flat Box action space, got {act_space}")
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ValueError(f"needs a bounded action space, got {act_space}")
        self.horizon = int(horizon or time_limit(first) or 0)
        if self.horizon <= 0:
            raise ValueError("the env has no time limit: set task.real.env_kwargs.max_episode_steps")
        obs_dim, act_dim = int(obs_space.shape[0]), int(act_space.shape[0])
        self._low = act_space.low.astype(np.float64)
        self._high = act_space.high.astype(np.float64)
        envs = [first] + [make_env() for _ in range(self.num_envs - 1)]
        self._slots = [_Slot(e, perturbations, obs_dim) for e in envs]
        dt = self._slots[0].view.dt if self._slots[0].view is not None else float(getattr(first.unwrapped, "dt", 0.0))
        self.is_mujoco = self._slots[0].view is not None
        self.spec_ = TaskSpec(name=name, label=f"{'mujoco' if self.is_mujoco else 'gym'}:{name}",
                              obs_dim=obs_dim, act_dim=act_dim, horizon=self.horizon,
                              control_hz=1.0 / dt if dt > 0 else 0.0)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._reset_done = False

    # ----------------------------------------------------------------- the Task protocol
    @property
    def envs(self) -> list[gym.Env]:
        """The single envs (for inspection and tests)."""
        return [s.env for s in self._slots]

    def perturbations(self, i: int) -> list[perturb.Perturbation]:
        """Env ``i``'s perturbations with this episode's draws (``magnitude``)."""
        return self._slots[i].perts

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "level" in options:
            self.set_level(options["level"])
        if seed is None and not self._reset_done:
            seed = self._seed
        seeds: list[int | None] = [None] * self.num_envs
        if seed is not None:
            children = np.random.SeedSequence(int(seed)).spawn(self.num_envs)
            for i, (slot, ss) in enumerate(zip(self._slots, children, strict=True)):
                env_seed, pert_seed = ss.generate_state(2)
                seeds[i] = int(env_seed)
                slot.rng = np.random.default_rng(int(pert_seed))
        self._reset_done = True
        obs = np.stack([slot.reset(self._level, s)[0] for slot, s in zip(self._slots, seeds, strict=True)])
        return obs.astype(np.float32), {}

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._reset_done:
            self.reset()
        n = self.num_envs
        a = np.asarray(actions, dtype=np.float64).reshape(n, -1)
        check_finite(a, f"RealTask {self.spec_.label} (batched)")  # NaN / inf: ValueError before any env steps
        a = np.clip(a, -1.0, 1.0)
        a_env = self._low + 0.5 * (a + 1.0) * (self._high - self._low)
        obs = np.empty((n, self.spec_.obs_dim))
        reward = np.zeros(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        collision = np.zeros(n, dtype=bool)
        final_obs: np.ndarray | None = None
        lengths = np.zeros(n, dtype=np.int64)
        returns = np.zeros(n)
        for i, slot in enumerate(self._slots):
            o, r, te, tr, info = slot.step(a_env[i])
            tr = tr or slot.t >= self.horizon
            done = te or tr
            coll = bool(self.collision_fn(o, info)) if self.collision_fn else bool(info.get("collision", False))
            succ = bool(self.success_fn(o, info)) if self.success_fn else bool(info.get("success", False))
            succ = succ and done and not coll
            rew = float(succ) - float(coll)
            if self.reward_mode == "dense":
                rew += r
            slot.ret += rew
            reward[i], term[i], trunc[i], success[i], collision[i] = rew, te, tr and not te, succ, coll
            if done:
                if final_obs is None:
                    final_obs = np.zeros((n, self.spec_.obs_dim), dtype=np.float32)
                final_obs[i] = o
                lengths[i], returns[i] = slot.t, slot.ret
                o, _ = slot.reset(self._level, None)
            obs[i] = o
        info_out: dict[str, Any] = {"success": success, "collision": collision}
        done_mask = term | trunc
        if final_obs is not None:
            info_out["final_obs"] = final_obs
            info_out["_final_obs"] = done_mask
            info_out["episode"] = {"r": returns, "l": lengths, "_r": done_mask}
        return obs.astype(np.float32), reward.astype(np.float32), term, trunc, info_out

    def close(self, **kwargs: Any) -> None:
        for slot in self._slots:
            slot.env.close()
