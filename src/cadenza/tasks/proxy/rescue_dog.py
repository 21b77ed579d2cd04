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

Arrival: by default (``arrival="reach"``) the episode succeeds and ends the first step the body is
within the goal radius, however fast it is moving. ``arrival="stop"`` (opt-in) asks the robot to
arrive and stop: success needs the body within the goal radius *and* slower than ``STOP_SPEED``
(0.25 m/s, the speed the mission's walk counts as stopped); passing through the goal fast neither
succeeds nor ends the episode, so the robot has to come back. A share ``NEAR_SHARE`` of the
episodes then starts close to the goal (``NEAR_DIST`` m), half of them at any bearing, with the
debris beyond the goal and its first piece nearly in line, so braking, turning on the spot and not
overshooting into debris are in the data. The stop rule draws its own random numbers after all of
the default ones; ``"reach"`` is exactly the task as it was before the option existed.

Reward is sparse by default: +1 on reaching the goal, -1 on a collision, 0 otherwise.
``reward="dense"`` adds a shaped term: the progress toward the goal each step (m), the same
+1 / -1 at the end. Same seed and same actions give bit-identical rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from cadenza.tasks.interface import BatchedTaskBase, TaskSpec, check_finite

OBS_DIM = 18
ACT_DIM = 3
DT = 0.02  # 50 Hz
HORIZON = 350  # 7 s
NUM_OBSTACLES = 4
SLOT_START, SLOT_SPACING = 0.8, 0.95  # m along the corridor
BEHIND_PENALTY = 1.0  # metres added to an obstacle's rank once the robot has passed it
PROGRESS_REWARD = 0.2  # dense reward per metre of progress toward the goal (a whole episode earns about 1)
ARRIVALS = ("reach", "stop")
STOP_SPEED = 0.25  # m/s: with arrival="stop", the body must be slower than this inside the goal radius
NEAR_SHARE = 0.3  # with arrival="stop", the share of episodes that start close to the goal at any bearing
NEAR_DIST = (0.3, 3.0)  # m: their start-to-goal distance (a mission's walk is 0.1-3 m)
NEAR_SPIN_SHARE = 0.5  # of those, the share that starts at any bearing (the rest roughly facing the goal)
NEAR_IN_LINE = 0.3  # their first piece of debris lies this share of the usual spread across the corridor
NEAR_DEBRIS_GAP = 0.7  # m: their first piece of debris sits this far beyond the goal along the corridor


@dataclass(frozen=True)
class Nominal:
    """The robot the base controller was tuned for (SI units; the body mass is 1)."""

    force_max: float = 8.0  # N at |a_fwd| = 1 (cruising needs about a third of it)
    lateral_ratio: float = 0.7  # lateral force authority relative to forward
    torque_max: float = 8.0  # N m at |a_yaw| = 1
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
    weak_left: float = 0.8  # lost thrust on the left legs, share
    asym_torque: float = 5.0  # N m of yaw torque per unit forward command per unit asymmetry
    wind: float = 0.3  # N, random direction
    slope_deg: float = 1.0  # degrees, random direction
    latency_steps: float = 1.0  # up to this many 20 ms steps of actuation delay
    noise: float = 0.01  # sensor noise std (observation units)


NOMINAL = Nominal()
PERTURB = Perturbation()

# Speed: the step is a few hundred numpy calls, so the code below keeps the number of calls and of
# strided or tiny-inner-loop operations low (obstacle-major scratch arrays, a comparison table instead
# of a sort, cos/sin of the yaw kept between steps, only the restarted envs observed a second time).
# Every value is still computed by the same floating-point operations in the same order, and the
# random stream is drawn in the same calls and shapes, so a seed gives the same rollout bit for bit.

# The five body-frame vectors of the observation (goal, velocity, nearest obstacle, next obstacle,
# IMU acceleration) sit at columns 3j, 3j+1 and their scale is applied after the rotation; the
# scalars (distance, yaw rate, the two clearances, ...) sit at columns 3j+2.
_VEC_SCALE = np.array([0.2, 1.0, 1.0, 1.0, 1.0 / 3.0])[:, None]
_PAIRS = tuple(combinations(range(NUM_OBSTACLES), 2))  # (i, j), i < j; one bit each in a ranking code
_PAIR_BITS = np.arange(len(_PAIRS), dtype=np.uint8)[:, None]  # bit of each pair in the ranking code
_FORCE_LATERAL = NOMINAL.force_max * NOMINAL.lateral_ratio  # N at |a_lat| = 1
_REUSE_TRIG_MIN_ENVS = 64  # from this many envs, keeping cos/sin of the yaw beats recomputing them
_SLOTS = SLOT_START + SLOT_SPACING * np.arange(NUM_OBSTACLES)  # nominal distance of each obstacle along the corridor


def _two_nearest_table() -> np.ndarray:
    """Obstacle indices ranked first and second, shape (2, 2**len(_PAIRS)), indexed by a ranking code.

    Bit b of a code is set when, for the pair (i, j) = ``_PAIRS[b]``, obstacle j ranks strictly
    before obstacle i (``key[j] < key[i]``). Equal keys keep index order, as a stable sort does.
    Codes that no total order produces map to (0, 0); comparisons of real keys never give them.
    """
    table = np.zeros((2, 1 << len(_PAIRS)), dtype=np.intp)
    for code in range(table.shape[1]):
        ahead = np.zeros(NUM_OBSTACLES, dtype=np.intp)  # how many obstacles rank before each one
        for b, (i, j) in enumerate(_PAIRS):
            ahead[j if not code >> b & 1 else i] += 1
        if sorted(ahead) == list(range(NUM_OBSTACLES)):
            table[:, code] = np.argsort(ahead)[:2]
    return table


assert len(_PAIRS) <= 8, "the ranking code is one byte, one bit per obstacle pair"
_TWO_NEAREST = _two_nearest_table()


def _obstacle_offsets(obst: np.ndarray, obst_r: np.ndarray, pos: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame offset (dx, dy) of every obstacle from the body, and its clearance (m).

    Each result has shape (NUM_OBSTACLES, k), obstacle-major, so that one obstacle's row is contiguous.
    """
    dx = obst[..., 0].T - pos[:, 0]
    dy = obst[..., 1].T - pos[:, 1]
    return dx, dy, _clearance_of(dx, dy, obst_r)


def _clearance_of(dx: np.ndarray, dy: np.ndarray, obst_r: np.ndarray) -> np.ndarray:
    """Clearance (m) between the body and obstacles at offsets (dx, dy) (NUM_OBSTACLES, k) of radius obst_r (k, N)."""
    clear = dx * dx
    clear += dy * dy
    np.sqrt(clear, out=clear)
    clear -= obst_r.T
    clear -= NOMINAL.robot_radius
    return clear


def _two_nearest(dx: np.ndarray, dy: np.ndarray, clear: np.ndarray, gx: np.ndarray, gy: np.ndarray,
                 flat_table: np.ndarray | None = None, columns: np.ndarray | None = None) -> np.ndarray:
    """Flat indices into the (NUM_OBSTACLES, k) arrays of the two most relevant obstacles, shape (2, k).

    The most relevant is the nearest by clearance, those already passed (behind the body as seen from
    the goal direction) ranked ``BEHIND_PENALTY`` metres further; ties keep obstacle order.
    ``flat_table`` (``_TWO_NEAREST * k``) and ``columns`` (``arange(k)``) may be passed precomputed.
    """
    k = dx.shape[1]
    behind = dx * gx
    behind += dy * gy
    key = clear + BEHIND_PENALTY * (behind < 0.0)
    beats = np.empty((len(_PAIRS), k), dtype=bool)  # beats[b]: for _PAIRS[b] = (i, j), key[j] < key[i]
    b = 0
    for i in range(NUM_OBSTACLES - 1):
        np.less(key[i + 1:], key[i], out=beats[b:b + NUM_OBSTACLES - 1 - i])
        b += NUM_OBSTACLES - 1 - i
    code = np.bitwise_or.reduce(beats.view(np.uint8) << _PAIR_BITS, axis=0)
    if flat_table is None:
        flat = _TWO_NEAREST.take(code, axis=1)
        flat *= k
    else:
        flat = flat_table.take(code, axis=1)
    flat += np.arange(k) if columns is None else columns
    return flat


class RescueDogProxy(BatchedTaskBase):
    """Batched rescue-dog proxy (same-step autoreset). Implements the cadenza ``Task`` protocol."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 64,
        level: float = 1.0,
        reward: Literal["sparse", "dense"] = "sparse",
        autoreset: bool = True,
        horizon: int = HORIZON,
        arrival: Literal["reach", "stop"] = "reach",
    ) -> None:
        if reward not in ("sparse", "dense"):
            raise ValueError(f"reward must be 'sparse' or 'dense', got {reward!r}")
        if arrival not in ARRIVALS:
            raise ValueError(f"arrival must be 'reach' or 'stop', got {arrival!r}")
        self.arrival = arrival
        self._env_name = "RescueDogProxy (cadenza/RescueDog-v0, batched)"
        self.num_envs = int(num_envs)
        self.reward_mode = reward
        self.autoreset = autoreset
        self.horizon = int(horizon)
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
        # scratch, not state: every step rewrites it
        self._det = np.zeros((n, OBS_DIM))  # the latest observation before sensor noise
        self._vec = np.zeros((2, 5, n))  # x and y rows of the five observed vectors, world frame
        self._flat_table = _TWO_NEAREST * n  # ranking table and env columns for the whole batch
        self._columns = np.arange(n)
        # cos and sin of the yaw they were computed for (compared bit for bit before reuse)
        self._cs_yaw = self.yaw.copy()
        self._cos = np.cos(self._cs_yaw)
        self._sin = np.sin(self._cs_yaw)

    # ----------------------------------------------------------------- the Task protocol
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
        a = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, ACT_DIM)
        check_finite(a, self._env_name)  # NaN / inf: ValueError before anything changes
        a = np.clip(a, -1.0, 1.0)
        self._physics(a)
        self.t += 1

        vec = self._vec
        np.subtract(self.goal[:, 0], self.pos[:, 0], out=vec[0, 0])
        np.subtract(self.goal[:, 1], self.pos[:, 1], out=vec[1, 0])
        dx, dy, clear = _obstacle_offsets(self.obst, self.obst_r, self.pos)
        hit = clear < 0.0
        collision = hit[0] | hit[1]
        for row in hit[2:]:
            collision |= row
        new_dist = np.hypot(vec[0, 0], vec[1, 0])
        at_goal = new_dist < NOMINAL.goal_radius
        if self.arrival == "stop":  # inside the radius is not enough: the body must also have stopped
            at_goal &= np.hypot(self.vel[:, 0], self.vel[:, 1]) < STOP_SPEED
        success = np.greater(at_goal, collision)  # at the goal and no collision
        terminated = at_goal | collision
        truncated = np.greater(self.t >= self.horizon, terminated)
        reward = np.subtract(success, collision, dtype=np.float64)
        if self.reward_mode == "dense":
            reward += PROGRESS_REWARD * (self.dist - new_dist)
        self.dist = new_dist
        self.ep_return += reward

        c, s = self._cos_sin(fresh=True)
        self._fill_det(self._det, vec, dx, dy, clear, c, s, self.vel, self.yaw_rate, self.acc, self.dist,
                       self.prev_cmd, self.t)
        obs = self._with_noise(self._det)
        info: dict[str, Any] = {"success": success, "collision": collision}
        done = terminated | truncated
        if done.any():
            info["final_obs"] = obs if self.autoreset else obs.copy()
            info["_final_obs"] = done
            info["episode"] = {"r": self.ep_return.copy(), "l": self.t.copy(), "_r": done}
            if self.autoreset:
                self._refresh_det(*self._reset_envs(done))
                obs = self._with_noise(self._det)
        return obs, reward.astype(np.float32), terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        pass

    # ----------------------------------------------------------------- the body API
    # For a layer that drives the bodies itself (the mission layer: its own sites, goals and episode
    # ends) instead of running the proxy's episodes through ``step``.
    def new_robots(self, mask: np.ndarray) -> None:
        """Draw a new robot (this episode's perturbation) for the envs of ``mask``, from the batch's own
        random stream, as an episode reset does."""
        self._reset_envs(mask)

    def place(self, i: int, obstacles: np.ndarray, yaw: float) -> None:
        """Put robot ``i`` at rest at the origin facing ``yaw``, among ``obstacles`` (rows x, y, radius;
        ``NUM_OBSTACLES`` of them), with its goal where it stands."""
        self.pos[i] = 0.0
        self.yaw[i] = yaw
        self.vel[i] = 0.0
        self.yaw_rate[i] = 0.0
        self.acc[i] = 0.0
        self.obst[i] = obstacles[:, :2]
        self.obst_r[i] = obstacles[:, 2]
        self.goal[i] = self.pos[i]
        self.dist[i] = 0.0

    def set_goal(self, i: int, x: float, y: float) -> None:
        """Move robot ``i``'s goal (what its observation points at) to ``(x, y)``."""
        self.goal[i, 0] = x
        self.goal[i, 1] = y
        self.dist[i] = float(np.hypot(x - self.pos[i, 0], y - self.pos[i, 1]))

    def restart_clock(self, i: int) -> None:
        """Robot ``i``'s step clock (the time-share observation, obs[17]) starts again at zero."""
        self.t[i] = 0

    def step_physics(self, actions: np.ndarray) -> None:
        """One 20 ms physics tick for every robot (``actions`` (num_envs, 3), clipped to [-1, 1]) without
        the episode bookkeeping of :meth:`step`; the step clock advances and holds at ``horizon - 1``."""
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, ACT_DIM), -1.0, 1.0)
        self._physics(a)
        np.minimum(self.t + 1, self.horizon - 1, out=self.t)

    def observe(self) -> np.ndarray:
        """The observation of every robot's current state and goal, shape (num_envs, 18) (draws its
        sensor noise, as every observation does)."""
        return self._observe()

    # ----------------------------------------------------------------- internals
    def _reset_envs(self, m: np.ndarray) -> tuple[np.ndarray, ...]:
        """Start a new episode in the envs of mask ``m``.

        Returns what ``_refresh_det`` needs: the env indices and their new yaw, goal, obstacle x and y
        (k, NUM_OBSTACLES), obstacle radii and goal distance. Everything else restarts at exactly 0.
        """
        idx = np.flatnonzero(m)
        k = idx.size
        if k == 0:
            return (idx,)
        rng, lv, p = self._rng, self._level, PERTURB
        ang = rng.uniform(-np.pi, np.pi, k)
        dist = rng.uniform(4.6, 5.6, k)
        hx, hy = np.cos(ang), np.sin(ang)  # heading from the start to the goal
        self.pos[idx] = 0.0
        gx, gy = hx * dist, hy * dist
        self.goal[idx, 0] = gx
        self.goal[idx, 1] = gy
        yaw = ang + rng.uniform(-0.6, 0.6, k)
        self.yaw[idx] = yaw
        self.vel[idx] = 0.0
        self.yaw_rate[idx] = 0.0
        self.acc[idx] = 0.0
        # debris along the corridor between start and goal
        # one piece of debris per slot along the corridor, so no two form a wall across the path
        along = _SLOTS + rng.uniform(-0.1, 0.1, (k, NUM_OBSTACLES))
        across = rng.uniform(-1.4, 1.4, (k, NUM_OBSTACLES))
        obst = np.empty((k, NUM_OBSTACLES, 2))
        ox, oy = obst[..., 0], obst[..., 1]
        np.add(along * hx[:, None], across * -hy[:, None], out=ox)  # the corridor's normal is (-hy, hx)
        np.add(along * hy[:, None], across * hx[:, None], out=oy)
        self.obst[idx] = obst
        obst_r = rng.uniform(0.12, 0.25, (k, NUM_OBSTACLES))
        self.obst_r[idx] = obst_r
        self.t[idx] = 0
        self.prev_cmd[idx] = 0.0
        self.cmd_buf[:, idx] = 0.0
        self.dist[idx] = dist
        self.ep_return[idx] = 0.0
        # the mismatch between this episode's robot and the nominal one
        j = rng.uniform(0.5, 1.0, (k, 6)) * lv
        self.mass[idx] = 1.0 + p.payload * j[:, 0]
        self.drag[idx] = NOMINAL.drag * (1.0 - p.slip * j[:, 1])
        self.gain_left[idx] = 1.0 - p.weak_left * j[:, 2]
        wdir = rng.uniform(-np.pi, np.pi, (k, 2))
        wind = p.wind * j[:, 3]
        self.ext_force[idx, 0] = wind * np.cos(wdir[:, 0])
        self.ext_force[idx, 1] = wind * np.sin(wdir[:, 0])
        g_slope = 9.81 * np.sin(np.radians(p.slope_deg * j[:, 4]))
        self.slope[idx, 0] = g_slope * np.cos(wdir[:, 1])
        self.slope[idx, 1] = g_slope * np.sin(wdir[:, 1])
        self.latency[idx] = np.floor(p.latency_steps * lv * rng.uniform(0.0, 1.0, k) + 0.5).astype(np.int64)
        self.noise[idx] = p.noise * j[:, 5]
        if self.arrival == "stop":
            yaw, gx, gy, dist = self._start_near(idx, ang, yaw, gx, gy, dist, along, across, obst)
        return idx, yaw, gx, gy, ox, oy, obst_r, dist

    def _start_near(self, idx: np.ndarray, ang: np.ndarray, yaw: np.ndarray, gx: np.ndarray, gy: np.ndarray,
                    dist: np.ndarray, along: np.ndarray, across: np.ndarray, obst: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
        """``arrival="stop"``: turn a share of the new episodes into near starts (see the module docstring).

        Draws after every default draw, always the same shapes; rewrites the chosen episodes' goal, yaw
        and debris (``obst``, whose x and y views the caller returns, is updated in place).
        """
        rng, k = self._rng, idx.size
        near = rng.uniform(0.0, 1.0, k) < NEAR_SHARE
        d_near = rng.uniform(NEAR_DIST[0], NEAR_DIST[1], k)
        yaw_off = rng.uniform(-np.pi, np.pi, k)
        spin = rng.uniform(0.0, 1.0, k) < NEAR_SPIN_SHARE
        if not near.any():
            return yaw, gx, gy, dist
        hx, hy = np.cos(ang), np.sin(ang)
        dist = np.where(near, d_near, dist)
        gx, gy = hx * dist, hy * dist
        yaw = np.where(near & spin, ang + yaw_off, yaw)
        shift = np.where(near, d_near + NEAR_DEBRIS_GAP - SLOT_START, 0.0)[:, None]
        along = along + shift
        across = across.copy()
        across[:, 0] *= np.where(near, NEAR_IN_LINE, 1.0)
        obst[..., 0] = along * hx[:, None] + across * -hy[:, None]
        obst[..., 1] = along * hy[:, None] + across * hx[:, None]
        self.goal[idx, 0] = gx
        self.goal[idx, 1] = gy
        self.yaw[idx] = yaw
        self.obst[idx] = obst
        self.dist[idx] = dist
        return yaw, gx, gy, dist

    def _cos_sin(self, fresh: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin of the current yaw, reused while the yaw is unchanged bit for bit (or ``fresh``)."""
        if (fresh or self.num_envs < _REUSE_TRIG_MIN_ENVS
                or not (self.yaw.view(np.int64) == self._cs_yaw.view(np.int64)).all()):
            np.copyto(self._cs_yaw, self.yaw)
            np.cos(self._cs_yaw, out=self._cos)
            np.sin(self._cs_yaw, out=self._sin)
        return self._cos, self._sin

    def _physics(self, cmd: np.ndarray) -> None:
        nom = NOMINAL
        # actuation latency: the legs act on the command sent `latency` steps ago
        lat = np.repeat(self.latency, ACT_DIM)  # per command entry: the selection runs over flat arrays
        applied = np.where(lat == 0, cmd.reshape(-1), np.where(lat == 1, self.cmd_buf[0].reshape(-1),
                                                               self.cmd_buf[1].reshape(-1)))
        self.cmd_buf[1] = self.cmd_buf[0]
        self.cmd_buf[0] = cmd
        self.prev_cmd = cmd
        a_fwd, a_lat, a_yaw = applied.reshape(-1, ACT_DIM).T
        gl = self.gain_left
        thrust = 0.5 * (1.0 + gl)  # mean leg strength
        fx = nom.force_max * a_fwd * thrust
        fy = _FORCE_LATERAL * a_lat * thrust
        tau = nom.torque_max * a_yaw * thrust + PERTURB.asym_torque * (1.0 - gl) * a_fwd
        c, s = self._cos_sin()
        m, drag, vel = self.mass, self.drag, self.vel
        fwx = c * fx  # the force in the world frame: (c fx - s fy, s fx + c fy) ...
        fwx -= s * fy
        fwy = s * fx
        fwy += c * fy
        for i, fw in enumerate((fwx, fwy)):
            fw += self.ext_force[:, i]  # ... plus the wind
            acc = np.divide(fw, m, out=self.acc[:, i])
            acc += self.slope[:, i]  # gravity along the slope
            acc -= drag * vel[:, i]  # ground friction
        vel += self.acc * DT
        self.pos += vel * DT
        yaw_acc = (tau - nom.yaw_drag * self.yaw_rate) / (nom.inertia * m)
        self.yaw_rate += yaw_acc * DT
        self.yaw += self.yaw_rate * DT

    def _clearance(self) -> np.ndarray:
        """Clearance (m) between the body and every obstacle, shape (num_envs, NUM_OBSTACLES)."""
        return _obstacle_offsets(self.obst, self.obst_r, self.pos)[2].T

    def _observe(self) -> np.ndarray:
        """The observation of the current state of every env (draws its sensor noise)."""
        vec = self._vec
        np.subtract(self.goal[:, 0], self.pos[:, 0], out=vec[0, 0])
        np.subtract(self.goal[:, 1], self.pos[:, 1], out=vec[1, 0])
        dx, dy, clear = _obstacle_offsets(self.obst, self.obst_r, self.pos)
        c, s = self._cos_sin()
        self._fill_det(self._det, vec, dx, dy, clear, c, s, self.vel, self.yaw_rate, self.acc, self.dist,
                       self.prev_cmd, self.t)
        return self._with_noise(self._det)

    def _refresh_det(self, idx: np.ndarray, yaw: np.ndarray, gx: np.ndarray, gy: np.ndarray, ox: np.ndarray,
                     oy: np.ndarray, obst_r: np.ndarray, dist: np.ndarray) -> None:
        """Recompute the noise-free observation of the envs ``idx`` that ``_reset_envs`` just restarted.

        Takes the new episodes' values from ``_reset_envs``; the body is at the origin (offsets from it
        are the positions themselves) and the velocities, yaw rate, acceleration, previous command and
        step count are 0, exactly as in the state.
        """
        k = idx.size
        c, s = np.cos(yaw), np.sin(yaw)
        self._cs_yaw[idx] = yaw
        self._cos[idx] = c
        self._sin[idx] = s
        vec = np.empty((2, 5, k))
        vec[0, 0] = gx
        vec[1, 0] = gy
        dx, dy = ox.T, oy.T
        zeros = np.zeros((k, 4))
        det = np.empty((k, OBS_DIM))
        self._fill_det(det, vec, dx, dy, _clearance_of(dx, dy, obst_r), c, s, zeros[:, :2], zeros[:, 0],
                       zeros[:, 2:], dist, zeros[:, 1:], np.zeros(k, dtype=np.int64))
        self._det[idx] = det

    def _fill_det(self, out: np.ndarray, vec: np.ndarray, dx: np.ndarray, dy: np.ndarray, clear: np.ndarray,
                  c: np.ndarray, s: np.ndarray, vel: np.ndarray, yaw_rate: np.ndarray, acc: np.ndarray,
                  dist: np.ndarray, prev_cmd: np.ndarray, t: np.ndarray) -> None:
        """Write the noise-free observation of k envs into ``out`` (k, OBS_DIM).

        ``vec`` (2, 5, k) holds the goal offset (world frame) in ``vec[:, 0]``; the rest is filled here.
        """
        vx, vy = vec[0], vec[1]
        # the two most relevant obstacles: nearest by clearance, those already passed ranked last
        if len(out) == self.num_envs:
            flat = _two_nearest(dx, dy, clear, vx[0], vy[0], self._flat_table, self._columns)
        else:
            flat = _two_nearest(dx, dy, clear, vx[0], vy[0])
        dx.take(flat, out=vx[2:4])
        dy.take(flat, out=vy[2:4])
        vx[1] = vel[:, 0]
        vy[1] = vel[:, 1]
        vx[4] = acc[:, 0]
        vy[4] = acc[:, 1]
        cols = out.reshape(len(out), OBS_DIM // 3, 3)  # a view: cols[:, j, i] is column 3j + i
        body = c * vx
        body += s * vy
        np.multiply(body, _VEC_SCALE, out=cols[:, :5, 0].T)
        body = c * vy
        body -= s * vx
        np.multiply(body, _VEC_SCALE, out=cols[:, :5, 1].T)
        np.multiply(dist, 0.2, out=out[:, 2])
        out[:, 5] = yaw_rate
        near_clear = clear.take(flat)
        out[:, 8] = near_clear[0]
        out[:, 11] = near_clear[1]
        for i in range(ACT_DIM):
            out[:, 14 + i] = prev_cmd[:, i]
        np.subtract(1.0, t / self.horizon, out=out[:, 17])

    def _with_noise(self, det: np.ndarray) -> np.ndarray:
        """``det`` plus sensor noise (one float64 standard normal per entry), as float32.

        A step on which envs restart draws twice, (num_envs, OBS_DIM) each time: once for the final
        observation of the ended episodes, once for the observation it returns.
        """
        if self._level > 0.0:
            obs = self._rng.standard_normal(det.shape)
            obs *= self.noise[:, None]
            obs += det
            return obs.astype(np.float32)
        return det.astype(np.float32)


class RescueDogEnv(gym.Env):
    """Single-env Gymnasium view of the proxy (``cadenza/RescueDog-v0``), for off-the-shelf RL code."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, level: float = 1.0, reward: Literal["sparse", "dense"] = "sparse",
                 horizon: int = HORIZON, arrival: Literal["reach", "stop"] = "reach") -> None:
        self._core = RescueDogProxy(num_envs=1, level=level, reward=reward, autoreset=False, horizon=horizon,
                                    arrival=arrival)
        self.observation_space = self._core.single_observation_space
        self.action_space = self._core.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self._core.reset(seed=seed, options=options)
        return obs[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        check_finite(a, "cadenza/RescueDog-v0")  # NaN / inf: ValueError before anything changes
        obs, r, term, trunc, info = self._core.step(a[None])
        return (obs[0], float(r[0]), bool(term[0]), bool(trunc[0]),
                {"success": bool(info["success"][0]), "collision": bool(info["collision"][0])})
