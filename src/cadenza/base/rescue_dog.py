"""The built-in frozen base for rescue-dog: a velocity tracker with a tangent-steering planner.

It is tuned for the nominal robot (mass 1, nominal ground friction, symmetric legs, no wind, no
latency) and reads only the task observation. Plan: head for the goal at ``v_max`` (slowing inside
the last ``slow_radius``); if one of the two nearest obstacles lies ahead within ``lookahead`` and
the straight path would pass closer than ``margin`` to it (judged from where the body will be
``predict_s`` ahead at its current velocity), turn the heading to the tangent that
clears it by ``margin``, on the side the path already leans to. Track: feed-forward against the
nominal friction plus a proportional term on the velocity error; turn to face the planned direction
with a PD on heading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadenza.tasks.proxy.rescue_dog import NOMINAL


@dataclass(frozen=True)
class RescueDogGains:
    v_max: float = 1.2
    slow_radius: float = 0.8
    margin: float = 0.3
    lookahead: float = 1.8
    predict_s: float = 0.2  # judge obstacles from where the body will be this far ahead
    kp_vel: float = 0.5
    kp_yaw: float = 4.0
    kd_yaw: float = 0.6


class RescueDogBase:
    """``obs[N, 18] -> a_base[N, 3]``; stateless, deterministic, never trained."""

    name = "builtin:rescue-dog"
    obs_dim = 18
    act_dim = 3

    def __init__(self, gains: RescueDogGains | None = None) -> None:
        self.g = gains or RescueDogGains()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        g, nom = self.g, NOMINAL
        obs = np.asarray(obs, dtype=np.float64)
        gx, gy, dist = obs[:, 0] * 5.0, obs[:, 1] * 5.0, obs[:, 2] * 5.0
        vx, vy, wz = obs[:, 3], obs[:, 4], obs[:, 5]
        norm = np.maximum(np.hypot(gx, gy), 1e-6)
        ux, uy = gx / norm, gy / norm
        for i in (0, 1):
            ox, oy, clear = obs[:, 6 + 3 * i], obs[:, 7 + 3 * i], obs[:, 8 + 3 * i]
            radii = np.hypot(ox, oy) - clear  # obstacle radius plus body radius
            # seen from where the body will be predict_s from now, at its current velocity
            ox, oy = ox - g.predict_s * vx, oy - g.predict_s * vy
            d = np.maximum(np.hypot(ox, oy), 1e-6)
            reach = radii + g.margin  # combined radius plus the margin we want
            along = ox * ux + oy * uy
            cross = ux * oy - uy * ox  # > 0: the obstacle is left of the path
            blocks = (along > 0.0) & (np.abs(cross) < reach) & (along < g.lookahead) & (d < dist)
            beta = np.arcsin(np.clip(reach / d, 0.0, 1.0))
            turn = -np.where(cross >= 0.0, 1.0, -1.0) * beta
            px, py = ox / d, oy / d
            cb, sb = np.cos(turn), np.sin(turn)
            ux = np.where(blocks, px * cb - py * sb, ux)
            uy = np.where(blocks, px * sb + py * cb, uy)
        speed = g.v_max * np.minimum(1.0, dist / g.slow_radius)
        dx, dy = ux * speed, uy * speed
        fx = nom.drag * dx + g.kp_vel * (dx - vx)
        fy = nom.drag * dy + g.kp_vel * (dy - vy)
        a = np.empty((obs.shape[0], 3))
        a[:, 0] = fx / nom.force_max
        a[:, 1] = fy / (nom.force_max * nom.lateral_ratio)
        a[:, 2] = (g.kp_yaw * np.arctan2(uy, ux) - g.kd_yaw * wz) / nom.torque_max
        return np.clip(a, -1.0, 1.0)
