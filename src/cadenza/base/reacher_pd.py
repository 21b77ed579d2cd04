"""``builtin:reacher-pd``: a joint-space PD controller on an analytic inverse-kinematics target.

Reads Reacher-v5's observation (cos q, sin q, target xy, joint velocities, fingertip - target),
solves the 2-link inverse kinematics for the target (of the two elbow solutions, the one nearer the
current joint angles), and drives the joints there with ``a = kp * (q* - q) - kd * qd`` in
normalised command units. The gains are tuned for the nominal arm (gear 200, armature 1, damping
1, no friction, no bias): about 20 rad/s bandwidth, close to critical damping. Nothing in it
integrates, so a constant disturbance torque leaves a steady error of ``bias / (200 * kp * gain)``
radians: the gap a residual can close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LINK1, LINK2 = 0.1, 0.11  # shoulder-elbow and elbow-fingertip lengths (m)
ELBOW_LIMIT = 3.0  # rad, joint1's range in the model


@dataclass(frozen=True)
class ReacherGains:
    kp: float = 2.0  # command per rad
    kd: float = 0.18  # command per rad/s


def wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def inverse_kinematics(tx: np.ndarray, ty: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both elbow solutions ``(q0_a, q1_a, q0_b, q1_b)`` for fingertip targets ``(tx, ty)``."""
    r2 = tx * tx + ty * ty
    c1 = np.clip((r2 - LINK1**2 - LINK2**2) / (2.0 * LINK1 * LINK2), np.cos(ELBOW_LIMIT), 1.0)
    q1 = np.arccos(c1)
    sols = []
    for s in (1.0, -1.0):
        e = s * q1
        q0 = np.arctan2(ty, tx) - np.arctan2(LINK2 * np.sin(e), LINK1 + LINK2 * np.cos(e))
        sols.extend([wrap(q0), e])
    return sols[0], sols[1], sols[2], sols[3]


class ReacherPD:
    """``obs[N, 10] -> a_base[N, 2]``; stateless, deterministic, never trained."""

    name = "builtin:reacher-pd"
    obs_dim = 10
    act_dim = 2

    def __init__(self, gains: ReacherGains | None = None) -> None:
        self.g = gains or ReacherGains()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        q0 = np.arctan2(obs[:, 2], obs[:, 0])
        q1 = np.arctan2(obs[:, 3], obs[:, 1])
        tx, ty = obs[:, 4], obs[:, 5]
        qd0, qd1 = obs[:, 6], obs[:, 7]
        a0, a1, b0, b1 = inverse_kinematics(tx, ty)
        ea0, ea1 = wrap(a0 - q0), a1 - q1
        eb0, eb1 = wrap(b0 - q0), b1 - q1
        use_a = np.abs(ea0) + np.abs(ea1) <= np.abs(eb0) + np.abs(eb1)
        e0, e1 = np.where(use_a, ea0, eb0), np.where(use_a, ea1, eb1)
        a = np.empty((obs.shape[0], 2))
        a[:, 0] = self.g.kp * e0 - self.g.kd * qd0
        a[:, 1] = self.g.kp * e1 - self.g.kd * qd1
        return np.clip(a, -1.0, 1.0)
