"""Stable-Baselines3 on a cadenza task: a ``VecEnv`` over the batched task, and a deterministic controller.

The adapter hands SB3 the task's own batch (no per-env Python loop as in ``DummyVecEnv``), so SB3 is
not slowed down by plumbing that cadenza's own PPO does not pay; its learning algorithm is untouched.
SB3 gets exactly what its ``VecEnv`` contract asks for: float32 observations, ``dones``, and for
finished envs ``terminal_observation``, ``TimeLimit.truncated`` (so truncations are bootstrapped) and
``episode`` statistics.

This module imports ``stable_baselines3``; import it only after checking the package is there.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from cadenza.tasks.interface import Task


class TaskVecEnv(VecEnv):
    def __init__(self, task: Task) -> None:
        s = task.spec
        obs_space = gym.spaces.Box(-np.inf, np.inf, (s.obs_dim,), np.float32)
        act_space = gym.spaces.Box(s.action_low, s.action_high, (s.act_dim,), np.float32)
        self.task = task  # before VecEnv.__init__, which reads render_mode through get_attr
        super().__init__(task.num_envs, obs_space, act_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds else None
        obs, _ = self.task.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return np.asarray(obs, dtype=np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float64)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rew, term, trunc, info = self.task.step(self._actions)
        dones = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            ep = info.get("episode", {})
            for i in np.flatnonzero(dones):
                d: dict[str, Any] = {"terminal_observation": np.asarray(info["final_obs"][i], dtype=np.float32),
                                     "TimeLimit.truncated": bool(trunc[i] and not term[i])}
                if "r" in ep:
                    d["episode"] = {"r": float(ep["r"][i]), "l": int(ep["l"][i]), "t": 0.0}
                infos[i] = d
        return np.asarray(obs, dtype=np.float32), np.asarray(rew, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.task.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.task, attr_name, None) if attr_name == "render_mode" else getattr(self.task, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.task, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        out = getattr(self.task, method_name)(*method_args, **method_kwargs)
        return [out for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class SB3Controller:
    """An SB3 policy behind the controller interface of :func:`cadenza.residual.evaluate.evaluate` (no base)."""

    arch = SimpleNamespace(use_base=False)

    def __init__(self, model: Any) -> None:
        self.model = model
        self.last_delta: np.ndarray | None = None

    def reset(self, mask: np.ndarray | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        a, _ = self.model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)
        a = np.asarray(a, dtype=np.float64)
        self.last_delta = a
        return a
