"""The robot's body for missions: the rescue-dog proxy's dynamics, driven one env at a time.

This is the only module that touches the proxy's internals. It reuses
:class:`cadenza.tasks.proxy.rescue_dog.RescueDogProxy` unchanged: ``reset(seed)`` draws this
episode's robot (payload, slip, weak legs, wind, slope, latency, sensor noise at the chosen
perturbation level), its physics step integrates the dynamics at 50 Hz and its observation function
builds the 18-dim observation. The mission layer then places the
body on the site, puts the site's rocks where the proxy keeps its obstacles, and sets the proxy's goal
to the current *carrot*: the point the action step wants the base to head for. The 18-dim observation
is the proxy's own, so the frozen base, the residual and the student see exactly the inputs they were
built for.
"""

from __future__ import annotations

import numpy as np

from cadenza.tasks.proxy.rescue_dog import ACT_DIM, DT, HORIZON, RescueDogProxy


class ProxyBody:
    """One proxy robot on a mission site."""

    dt = DT
    horizon = HORIZON  # the time-share observation (obs[17]) counts down over this many ticks per action step

    def __init__(self, level: float, seed: int, rocks: np.ndarray, start_yaw: float) -> None:
        self.env = RescueDogProxy(num_envs=1, level=level, autoreset=False, horizon=HORIZON)
        self.env.reset(seed=int(seed))
        e = self.env
        e.pos[0] = 0.0
        e.yaw[0] = start_yaw
        e.vel[0] = 0.0
        e.yaw_rate[0] = 0.0
        e.acc[0] = 0.0
        e.obst[0] = rocks[:, :2]
        e.obst_r[0] = rocks[:, 2]
        e.goal[0] = e.pos[0]
        e.dist[0] = 0.0

    @property
    def x(self) -> float:
        return float(self.env.pos[0, 0])

    @property
    def y(self) -> float:
        return float(self.env.pos[0, 1])

    @property
    def yaw(self) -> float:
        return float(self.env.yaw[0])

    @property
    def velocity(self) -> tuple[float, float]:
        """World-frame velocity (m/s)."""
        return float(self.env.vel[0, 0]), float(self.env.vel[0, 1])

    @property
    def speed(self) -> float:
        return float(np.hypot(*self.env.vel[0]))

    @property
    def yaw_rate(self) -> float:
        return float(self.env.yaw_rate[0])

    def start_step(self) -> None:
        """A new action step: its time share (obs[17]) starts full."""
        self.env.t[0] = 0

    def set_carrot(self, x: float, y: float) -> None:
        e = self.env
        e.goal[0, 0] = x
        e.goal[0, 1] = y
        e.dist[0] = float(np.hypot(x - e.pos[0, 0], y - e.pos[0, 1]))

    def observe(self) -> np.ndarray:
        """The proxy's 18-dim observation of the current state and carrot, shape (1, 18)."""
        return self.env._observe()

    def step(self, action: np.ndarray) -> None:
        """Apply one 20 ms command (shape (1, 3), clipped to [-1, 1] as the proxy does).

        Calls the proxy's physics directly: ``RescueDogProxy.step`` would also compute its own goal,
        obstacle and reward bookkeeping and an observation that the mission layer recomputes anyway.
        """
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(1, ACT_DIM), -1.0, 1.0)
        self.env._physics(a)
        self.env.t[0] = min(int(self.env.t[0]) + 1, HORIZON - 1)  # keep obs[17] in [0, 1] on long steps
