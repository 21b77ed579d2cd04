"""The robot's body for missions: the rescue-dog proxy's dynamics, driven one env at a time.

It drives :class:`cadenza.tasks.proxy.rescue_dog.RescueDogProxy` through the proxy's body API:
``reset(seed)`` / ``new_robots`` draw this episode's robot (payload, slip, weak legs, wind, slope,
latency, sensor noise at the chosen perturbation level), ``step_physics`` integrates the dynamics at
50 Hz and ``observe`` builds the 18-dim observation. The mission layer places the body on the site
with the site's rocks as the proxy's obstacles (``place``), and sets the proxy's goal to the current
*carrot* (``set_goal``): the point the action step wants the base to head for. The 18-dim observation
is the proxy's own, so the frozen base, the residual and the student see exactly the inputs they were
built for.
"""

from __future__ import annotations

import numpy as np

from cadenza.tasks.proxy.rescue_dog import DT, HORIZON, RescueDogProxy


class ProxyBody:
    """One proxy robot on a mission site: env ``index`` of a :class:`RescueDogProxy` batch.

    ``ProxyBody(level, seed, rocks, start_yaw)`` builds a one-robot batch of its own (``env run``);
    :meth:`in_batch` places robot ``index`` of a shared batch (the mission training task), whose
    physics the owner of the batch steps for all robots at once.
    """

    dt = DT
    horizon = HORIZON  # the time-share observation (obs[17]) counts down over this many ticks per action step

    def __init__(self, level: float, seed: int, rocks: np.ndarray, start_yaw: float) -> None:
        env = RescueDogProxy(num_envs=1, level=level, autoreset=False, horizon=HORIZON)
        env.reset(seed=int(seed))
        self.env, self.i = env, 0
        env.place(0, rocks, start_yaw)

    @classmethod
    def in_batch(cls, env: RescueDogProxy, index: int, rocks: np.ndarray, start_yaw: float) -> ProxyBody:
        """Robot ``index`` of ``env``: draws its perturbation from the batch's random stream (as the
        proxy's own episode reset does) and places it at the origin of a new site."""
        body = cls.__new__(cls)
        body.env, body.i = env, int(index)
        mask = np.zeros(env.num_envs, dtype=bool)
        mask[body.i] = True
        env.new_robots(mask)
        env.place(body.i, rocks, start_yaw)
        return body

    @property
    def x(self) -> float:
        return float(self.env.pos[self.i, 0])

    @property
    def y(self) -> float:
        return float(self.env.pos[self.i, 1])

    @property
    def yaw(self) -> float:
        return float(self.env.yaw[self.i])

    @property
    def velocity(self) -> tuple[float, float]:
        """World-frame velocity (m/s)."""
        return float(self.env.vel[self.i, 0]), float(self.env.vel[self.i, 1])

    @property
    def speed(self) -> float:
        return float(np.hypot(*self.env.vel[self.i]))

    @property
    def yaw_rate(self) -> float:
        return float(self.env.yaw_rate[self.i])

    def start_step(self) -> None:
        """A new action step: its time share (obs[17]) starts full."""
        self.env.restart_clock(self.i)

    def set_carrot(self, x: float, y: float) -> None:
        self.env.set_goal(self.i, x, y)

    def observe(self) -> np.ndarray:
        """The proxy's 18-dim observation of the current state and carrot, shape (1, 18) (one-robot batch)."""
        return self.env.observe()

    def step(self, action: np.ndarray) -> None:
        """Apply one 20 ms command (shape (1, 3), clipped to [-1, 1] as the proxy does; one-robot batch).

        Steps the proxy's physics only: ``RescueDogProxy.step`` would also compute its own goal,
        obstacle and reward bookkeeping and an observation that the mission layer recomputes anyway.
        """
        step_batch(self.env, action)


def step_batch(env: RescueDogProxy, actions: np.ndarray) -> None:
    """One 20 ms physics tick for every robot of ``env`` (actions (num_envs, 3), clipped to [-1, 1]).

    The step clock holds at ``horizon - 1``, which keeps obs[17] in [0, 1] on long action steps."""
    env.step_physics(actions)
