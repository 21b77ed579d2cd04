"""``builtin:rescue-dog-gait``: a phase-based trot with joint PD for the MuJoCo rescue dog.

Reads the ``builtin:rescue-dog`` real task's observation (see ``cadenza.tasks.real.rescue_dog``).
Three layers, all stateless:

1. **Commands.** Face the goal and walk to it: yaw-rate command ``w = kp_heading * bearing``
   (bearing = the goal's angle in the body frame, clipped to ``w_max``), forward-velocity command
   ``v = v_max * max(0, cos bearing)``, slowing down inside ``slow_radius`` of the goal.
2. **Trot.** The diagonal leg pairs (front-left + back-right, front-right + back-left) swing in
   antiphase on the task's gait clock (``GAIT_HZ``). Each hip sweeps ``cos(phase)`` with an
   amplitude mixed from the two commands: ``v / v_per_rad`` in each leg's forward direction plus
   ``w / w_per_rad`` the same way on every leg (which turns the body); each ankle lifts the foot
   by ``lift`` during its swing half-cycle, a quarter cycle after the hip.
3. **PD.** Torque command ``kp * (q* - q) - kd * qd`` per joint, in normalised units (the task's
   motors give 40 N m per unit: 75 N m per rad and 2.5 N m s per rad).

The amplitudes per unit command (``v_per_rad``, ``w_per_rad``) were measured on the nominal robot
(no payload, nominal friction, equal motors, no pushes); nothing adapts when the robot changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadenza.tasks.real.quadruped_layout import STAND_POSE

# motor order: FR, FL, BL, BR legs (hip, ankle each)
HIP_FORWARD = np.array([1.0, -1.0, -1.0, 1.0])  # hip sweep sign that pushes the body forward in stance
ANKLE_SIGN = np.array([1.0, 1.0, -1.0, -1.0])  # ankle sign that extends the leg (raises the body)
PAIR_PHASE = np.array([np.pi, 0.0, np.pi, 0.0])  # FL + BR on the clock, FR + BL half a cycle later


@dataclass(frozen=True)
class GaitGains:
    v_max: float = 0.5  # m/s
    w_max: float = 1.0  # rad/s
    kp_heading: float = 1.5  # (rad/s) per rad of bearing
    slow_radius: float = 0.6  # m
    v_per_rad: float = 2.3  # forward speed per rad of hip amplitude (nominal robot, near 0.2 rad)
    w_per_rad: float = 6.0  # yaw rate per rad of common hip amplitude (nominal robot)
    max_amp: float = 0.35  # rad, hip amplitude limit (the joint range is +/-0.52)
    lift: float = 0.4  # rad of ankle during swing
    stance: float = 0.9  # rad of ankle in stance
    kp: float = 1.875  # command per rad (75 N m / rad)
    kd: float = 0.0625  # command per rad/s (2.5 N m s / rad)


class QuadrupedGait:
    """``obs[N, 31] -> a_base[N, 8]``; stateless, deterministic, never trained."""

    name = "builtin:rescue-dog-gait"
    obs_dim = 31
    act_dim = 8

    def __init__(self, gains: GaitGains | None = None) -> None:
        self.g = gains or GaitGains()

    def commands(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward-velocity and yaw-rate commands toward the goal."""
        g = self.g
        gx, gy, dist = obs[:, 0], obs[:, 1], obs[:, 2]
        bearing = np.arctan2(gy, gx)
        w = np.clip(g.kp_heading * bearing, -g.w_max, g.w_max)
        v = g.v_max * np.maximum(0.0, np.cos(bearing)) * np.minimum(1.0, dist / g.slow_radius)
        return v, w

    def targets(self, obs: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Joint targets of the trot for the commands (N, 8), motor order."""
        g = self.g
        phase = np.arctan2(obs[:, 26], obs[:, 27])[:, None] + PAIR_PHASE  # (N, 4)
        amp_f = (v / g.v_per_rad)[:, None] * HIP_FORWARD
        amp_w = (w / g.w_per_rad)[:, None]
        amp = np.clip(amp_f + amp_w, -g.max_amp, g.max_amp)
        hip = STAND_POSE[0::2] + amp * np.cos(phase)
        ankle = ANKLE_SIGN * (g.stance - g.lift * np.maximum(0.0, np.sin(phase + np.pi / 2.0)))
        q = np.empty((obs.shape[0], 8))
        q[:, 0::2], q[:, 1::2] = hip, ankle
        return q

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        v, w = self.commands(obs)
        target = self.targets(obs, v, w)
        a = self.g.kp * (target - obs[:, 10:18]) - self.g.kd * obs[:, 18:26]
        return np.clip(a, -1.0, 1.0)
