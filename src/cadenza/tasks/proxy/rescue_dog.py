"""The rescue-dog proxy: a quadruped's body on the ground plane, vectorised over N envs in numpy.

The body is a planar rigid body (position, heading, velocities) driven at 50 Hz by three normalised
commands in [-1, 1]: forward force, lateral force (weaker: quadrupeds side-step badly) and yaw
torque, all in the body frame. Each episode asks it to reach a goal 4.6-5.6 m away through a corridor
of round debris obstacles, inside a time limit. Touching debris ends the episode (a collision).

The perturbation level L in [0, 1] scales how far the simulated robot is from the nominal one the
built-in base controller was tuned for (see ``Perturbation``): payload mass, slippery ground, weaker
legs on the left side, a steady push (wind), a slope, up to one step of actuation latency and
sensor noise. Every magnitude is ``L * jitter`` with a per-episode jitter in [0.5, 1].

Observation (18 floats, body frame, as a robot's sensors and state estimator would give them):

====  ==========================================================
0-1   goal position relative to the body (m / 5)
2     distance to the goal (m / 5)
3-4   body velocity (m/s)
5     yaw rate (rad/s)
6-8   nearest obstacle not yet passed: relative position (m) and clearance (m)
9-11  the next one: relative position and clearance
12-13 IMU acceleration (m/s^2 / 3)
14-16 the previous command sent to the legs
17    share of the time limit left
====  ==========================================================

Reward is sparse by default: +1 on reaching the goal, -1 on a collision, 0 otherwise.
``reward="dense"`` adds a shaped term: the progress toward the goal each step (m), the same
+1 / -1 at the end. Same seed and same actions give bit-identical rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from cadenza.tasks.interface import TaskSpec

OBS_DIM = 18
ACT_DIM = 3
DT = 0.02  # 50 Hz
HORIZON = 350  # 7 s
NUM_OBSTACLES = 4
SLOT_START, SLOT_SPACING = 0.8, 0.95  # m along the corridor
BEHIND_PENALTY = 1.0  # metres added to an obstacle's rank once the robot has passed it


@dataclass(frozen=True)
class Nominal:
    """The robot the base controller was tuned for (SI units; the body mass is 1)."""

    force_max: float = 4.0  # N at |a_fwd| = 1
    lateral_ratio: float = 0.7  # lateral force authority relative to forward
    torque_max: float = 4.0  # N m at |a_yaw| = 1
    drag: float = 2.0  # ground friction, viscous, per unit mass (1/s)
    yaw_drag: float = 2.0
    inertia: float = 0.25
    robot_radius: float = 0.25
    goal_radius: float = 0.35


@dataclass(frozen=True)
class Perturbation:
    """Magnitudes at level 1.0 (each episode draws ``level * U(0.5, 1) * magnitude``)."""

    payload: float = 1.2  # extra mass, share of body mass
    slip: float = 0.75  # lost ground friction (slippery debris), share of nominal
    weak_left: float = 0.7  # lost thrust on the left legs, share
    asym_torque: float = 5.0  # N m of yaw torque per unit forward command per unit asymmetry
    wind: float = 0.3  # N, random direction
    slope_deg: float = 1.0  # degrees, random direction
    latency_steps: float = 1.0  # up to this many 20 ms steps of actuation delay
    noise: float = 0.01  # sensor noise std (observation units)


NOMINAL = Nominal()
PERTURB = Perturbation()


class RescueDogProxy(VectorEnv):
    """Batched rescue-dog proxy (same-step autoreset). Implements the cadenza ``Task`` protocol."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 64,
        level: float = 1.0,
        reward: Literal["sparse", "dense"] = "sparse",
        autoreset: bool = True,
        horizon: int = HORIZON,
    ) -> None:
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward must be 'sparse' or 'dense', got {reward!r}")
        self.num_envs = int(num_envs)
        self.reward_mode = reward
        self.autoreset = autoreset
        self.horizon = int(horizon)
        self._level = 0.0
        self.set_level(level)
        self.spec_ = TaskSpec(
            name="rescue-dog", label="proxy", obs_dim=OBS_DIM, act_dim=ACT_DIM,
            horizon=self.horizon, control_hz=1.0 / DT,
        )
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        n = self.num_envs
        self._rng = np.random.default_rng(0)
        self.pos = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self.vel = np.zeros((n, 2))
        self.yaw_rate = np.zeros(n)
        self.acc = np.zeros((n, 2))
        self.goal = np.zeros((n, 2))
        self.obst = np.zeros((n, NUM_OBSTACLES, 2))
        self.obst_r = np.zeros((n, NUM_OBSTACLES))
        self.t = np.zeros(n, dtype=np.int64)
        self.prev_cmd = np.zeros((n, ACT_DIM))
        self.cmd_buf = np.zeros((2, n, ACT_DIM))  # commands sent 1 and 2 steps ago
        self.dist = np.zeros(n)
        self.ep_return = np.zeros(n)
        # per-episode physics
        self.mass = np.ones(n)
        self.drag = np.full(n, NOMINAL.drag)
        self.gain_left = np.ones(n)
        self.ext_force = np.zeros((n, 2))  # wind (N, world frame)
        self.slope = np.zeros((n, 2))  # gravity along the slope per unit mass (m/s^2, world)
        self.latency = np.zeros(n, dtype=np.int64)
        self.noise = np.zeros(n)

    # ----------------------------------------------------------------- the Task protocol
    @property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        return self.spec_

    @spec.setter
    def spec(self, value: Any) -> None:  # gymnasium's make() tries to set env.spec
        pass

    @property
    def level(self) -> float:
        return self._level

    def set_level(self, level: float) -> None:
        if not 0.0 <= float(level) <= 1.0:
            raise ValueError(f"perturbation level must be in [0, 1], got {level}")
        self._level = float(level)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if options and "level" in options:
            self.set_level(options["level"])
        self._reset_envs(np.ones(self.num_envs, dtype=bool))
        return self._observe(), {}

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, ACT_DIM), -1.0, 1.0)
        self._physics(a)
        self.t += 1

        clear = self._clearance()
        collision = (clear < 0.0).any(axis=1)
        new_dist = np.hypot(*(self.goal - self.pos).T)
        success = (new_dist < NOMINAL.goal_radius) & ~collision
        terminated = success | collision
        truncated = (self.t >= self.horizon) & ~terminated
        reward = success.astype(np.float64) - collision.astype(np.float64)
        if self.reward_mode == "dense":
            reward = reward + (self.dist - new_dist)
        self.dist = new_dist
        self.ep_return += reward

        obs = self._observe(clear)
        info: dict[str, Any] = {"success": success, "collision": collision}
        done = terminated | truncated
        if done.any():
            info["final_obs"] = obs.copy()
            info["_final_obs"] = done
            info["episode"] = {"r": self.ep_return.copy(), "l": self.t.copy(), "_r": done}
            if self.autoreset:
                self._reset_envs(done)
                obs = self._observe()
        return obs, reward.astype(np.float32), terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        pass

    # ----------------------------------------------------------------- internals
    def _reset_envs(self, m: np.ndarray) -> None:
        k = int(m.sum())
        if k == 0:
            return
        rng, lv, p = self._rng, self._level, PERTURB
        ang = rng.uniform(-np.pi, np.pi, k)
        dist = rng.uniform(4.6, 5.6, k)
        heading = np.stack([np.cos(ang), np.sin(ang)], 1)
        self.pos[m] = 0.0
        self.goal[m] = heading * dist[:, None]
        self.yaw[m] = ang + rng.uniform(-0.6, 0.6, k)
        self.vel[m] = 0.0
        self.yaw_rate[m] = 0.0
        self.acc[m] = 0.0
        # debris along the corridor between start and goal
        # one piece of debris per slot along the corridor, so no two form a wall across the path
        along = SLOT_START + SLOT_SPACING * np.arange(NUM_OBSTACLES) + rng.uniform(-0.1, 0.1, (k, NUM_OBSTACLES))
        across = rng.uniform(-1.4, 1.4, (k, NUM_OBSTACLES))
        normal = np.stack([-heading[:, 1], heading[:, 0]], 1)
        self.obst[m] = along[..., None] * heading[:, None, :] + across[..., None] * normal[:, None, :]
        self.obst_r[m] = rng.uniform(0.12, 0.25, (k, NUM_OBSTACLES))
        self.t[m] = 0
        self.prev_cmd[m] = 0.0
        self.cmd_buf[:, m] = 0.0
        self.dist[m] = dist
        self.ep_return[m] = 0.0
        # the mismatch between this episode's robot and the nominal one
        j = rng.uniform(0.5, 1.0, (k, 6)) * lv
        self.mass[m] = 1.0 + p.payload * j[:, 0]
        self.drag[m] = NOMINAL.drag * (1.0 - p.slip * j[:, 1])
        self.gain_left[m] = 1.0 - p.weak_left * j[:, 2]
        wdir = rng.uniform(-np.pi, np.pi, (k, 2))
        self.ext_force[m] = (p.wind * j[:, 3])[:, None] * np.stack([np.cos(wdir[:, 0]), np.sin(wdir[:, 0])], 1)
        g_slope = 9.81 * np.sin(np.radians(p.slope_deg * j[:, 4]))
        self.slope[m] = g_slope[:, None] * np.stack([np.cos(wdir[:, 1]), np.sin(wdir[:, 1])], 1)
        self.latency[m] = np.floor(p.latency_steps * lv * rng.uniform(0.0, 1.0, k) + 0.5).astype(np.int64)
        self.noise[m] = p.noise * j[:, 5]

    def _physics(self, cmd: np.ndarray) -> None:
        nom = NOMINAL
        # actuation latency: the legs act on the command sent `latency` steps ago
        lat = self.latency
        applied = np.where((lat == 0)[:, None], cmd, np.where((lat == 1)[:, None], self.cmd_buf[0], self.cmd_buf[1]))
        self.cmd_buf[1] = self.cmd_buf[0]
        self.cmd_buf[0] = cmd
        self.prev_cmd = cmd
        gl = self.gain_left
        thrust = 0.5 * (1.0 + gl)  # mean leg strength
        fx = nom.force_max * applied[:, 0] * thrust
        fy = nom.force_max * nom.lateral_ratio * applied[:, 1] * thrust
        tau = nom.torque_max * applied[:, 2] * thrust + PERTURB.asym_torque * (1.0 - gl) * applied[:, 0]
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        fwx = c * fx - s * fy + self.ext_force[:, 0]
        fwy = s * fx + c * fy + self.ext_force[:, 1]
        m = self.mass
        ax = fwx / m + self.slope[:, 0] - self.drag * self.vel[:, 0]
        ay = fwy / m + self.slope[:, 1] - self.drag * self.vel[:, 1]
        self.acc[:, 0] = ax
        self.acc[:, 1] = ay
        self.vel[:, 0] += ax * DT
        self.vel[:, 1] += ay * DT
        self.pos += self.vel * DT
        yaw_acc = (tau - nom.yaw_drag * self.yaw_rate) / (nom.inertia * m)
        self.yaw_rate += yaw_acc * DT
        self.yaw += self.yaw_rate * DT

    def _clearance(self) -> np.ndarray:
        d = self.obst - self.pos[:, None, :]
        return np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2) - self.obst_r - NOMINAL.robot_radius

    def _observe(self, clear: np.ndarray | None = None) -> np.ndarray:
        if clear is None:
            clear = self._clearance()
        n = self.num_envs
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        obs = np.empty((n, OBS_DIM))

        def to_body(vx: np.ndarray, vy: np.ndarray, out: int, scale: float = 1.0) -> None:
            obs[:, out] = (c * vx + s * vy) * scale
            obs[:, out + 1] = (-s * vx + c * vy) * scale

        g = self.goal - self.pos
        to_body(g[:, 0], g[:, 1], 0, 0.2)
        obs[:, 2] = self.dist * 0.2
        to_body(self.vel[:, 0], self.vel[:, 1], 3)
        obs[:, 5] = self.yaw_rate
        # the two most relevant obstacles: nearest by clearance, those already passed ranked last
        behind = ((self.obst - self.pos[:, None, :]) * g[:, None, :]).sum(-1) < 0.0
        order = np.argsort(clear + BEHIND_PENALTY * behind, axis=1)[:, :2]
        rows = np.arange(n)[:, None]
        near = self.obst[rows, order] - self.pos[:, None, :]  # (n, 2, 2)
        near_clear = clear[rows, order]
        for i in range(2):
            to_body(near[:, i, 0], near[:, i, 1], 6 + 3 * i)
            obs[:, 8 + 3 * i] = near_clear[:, i]
        to_body(self.acc[:, 0], self.acc[:, 1], 12, 1.0 / 3.0)
        obs[:, 14:17] = self.prev_cmd
        obs[:, 17] = 1.0 - self.t / self.horizon
        if self._level > 0.0:
            obs += self.noise[:, None] * self._rng.standard_normal((n, OBS_DIM))
        return obs.astype(np.float32)


class RescueDogEnv(gym.Env):
    """Single-env Gymnasium view of the proxy (``cadenza/RescueDog-v0``), for off-the-shelf RL code."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, level: float = 1.0, reward: Literal["sparse", "dense"] = "sparse",
                 horizon: int = HORIZON) -> None:
        self._core = RescueDogProxy(num_envs=1, level=level, reward=reward, autoreset=False, horizon=horizon)
        self.observation_space = self._core.single_observation_space
        self.action_space = self._core.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self._core.reset(seed=seed, options=options)
        return obs[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, r, term, trunc, info = self._core.step(np.asarray(action, dtype=np.float64)[None])
        return (obs[0], float(r[0]), bool(term[0]), bool(trunc[0]),
                {"success": bool(info["success"][0]), "collision": bool(info["collision"][0])})
