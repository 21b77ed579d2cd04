"""My robot, my task, my controller: everything cadenza needs, in one file of the project.

``cadenza.toml`` points at three things here:

* ``[task.real] task = "my_robot:make_env"``: a factory returning a ``gymnasium.Env``. The env
  keeps its MuJoCo model in ``self.model`` / ``self.data`` (and its control period in ``self.dt``)
  so cadenza can perturb masses, gains, damping and friction, push it and add torques.
* ``[task.real] success = "my_robot:upright"``: the success rule, ``(obs, info) -> bool``, read on
  the last step of each episode.
* ``[task.real] base = "my_robot:UprightPD"``: the frozen base, ``obs[N, 3] -> action[N, 1]``.

The robot is a 0.5 m pole with a 1 kg bob on a motorised hinge. It starts 0.2-0.6 rad from
upright and has 2 s (100 steps at 50 Hz) to stand up and stay there.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

XML = """
<mujoco model="upright-pendulum">
  <option timestep="0.01" integrator="RK4"/>
  <worldbody>
    <body name="pole">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom name="rod" type="capsule" fromto="0 0 0 0 0 0.5" size="0.015" mass="0.01"/>
      <geom name="bob" type="sphere" pos="0 0 0.5" size="0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="motor" joint="hinge" gear="8" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""

FRAME_SKIP = 2  # 2 x 10 ms: 50 Hz control
GEAR = 8.0  # N m at full command
MGL = 1.0 * 9.81 * 0.5  # gravity torque per unit sin(angle) of the nominal pole (N m)


class UprightPendulum(gym.Env):
    """Stand a pendulum up. Observation: cos angle, sin angle, angular velocity. Action: torque in [-1, 1]."""

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, frame_skip: int = FRAME_SKIP) -> None:
        self.model = mujoco.MjModel.from_xml_string(XML)
        self.data = mujoco.MjData(self.model)
        self.frame_skip = int(frame_skip)
        self.dt = self.model.opt.timestep * self.frame_skip
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> np.ndarray:
        q, qd = float(self.data.qpos[0]), float(self.data.qvel[0])
        return np.array([np.cos(q), np.sin(q), qd])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        rng = self.np_random
        self.data.qpos[0] = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
        self.data.qvel[0] = rng.uniform(-0.2, 0.2)
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        q, qd = float(self.data.qpos[0]), float(self.data.qvel[0])
        reward = -(q * q + 0.01 * qd * qd)
        fallen = abs(q) > 1.5  # past horizontal: call it a crash
        info = {"angle": q, "angular_velocity": qd, "fallen": fallen}
        return self._obs(), reward, fallen, False, info


def make_env(**kwargs: Any) -> gym.Env:
    """The env factory ``[task.real].task`` names; ``env_kwargs`` arrive here as keyword arguments."""
    return UprightPendulum(**kwargs)


def upright(obs: np.ndarray, info: dict[str, Any]) -> bool:
    """Success: within 0.05 rad of upright and nearly still (the true state, not the noisy sensors)."""
    return abs(info["angle"]) < 0.05 and abs(info["angular_velocity"]) < 0.5


def fell(obs: np.ndarray, info: dict[str, Any]) -> bool:
    """Collision: the pole went past horizontal (the env ends the episode there)."""
    return bool(info["fallen"])


class UprightPD:
    """The frozen base: gravity compensation for the nominal pole plus a PD on the angle."""

    def __init__(self, kp: float = 25.0, kd: float = 4.0) -> None:
        self.kp, self.kd = kp, kd

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        angle = np.arctan2(obs[:, 1], obs[:, 0])
        torque = MGL * np.sin(angle) - self.kp * angle - self.kd * obs[:, 2]
        return np.clip(torque / GEAR, -1.0, 1.0)[:, None]
