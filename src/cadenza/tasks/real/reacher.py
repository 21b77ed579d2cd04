"""``builtin:reacher``: Gymnasium's ``Reacher-v5`` (a 2-link planar arm) with cadenza's success rule.

Success rule: the episode runs its full 50 steps (1 s at 50 Hz; Reacher never terminates early)
and succeeds when, after the last step, the fingertip's centre lies strictly within 1 cm of the
target's centre in the plane (``|fingertip_xy - target_xy| < 0.01`` m). ``collision`` is always
false: the arm has nothing to hit.

The observation is Reacher-v5's own 10 floats: cos and sin of both joint angles, the target
position, both joint velocities and the fingertip-minus-target vector.

Reward: ``sparse`` is +1 on success (cadenza adds it); ``dense`` (cadenza's training default) also
gives ``-distance_reward * d`` every step, ``d`` the fingertip-target distance in metres after the
step (``distance_reward`` 0.5 per metre by default; ``env_kwargs.distance_reward`` changes it). It
rewards holding the fingertip on the target, which is what the end-of-episode rule asks for; over
an episode it adds up to about -0.65 for the base on the nominal arm and -0.95 at level 1.0, the
size of the +1 outcome. Reacher-v5's own reward (the same distance term plus a control cost of up
to 2 per step) is not used: its control cost outweighs the outcome several times over and, in a
measured run, taught the residual nothing.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from cadenza.project.config import PerturbationSpec
from cadenza.tasks.interface import check_finite

ENV_ID = "Reacher-v5"
HORIZON = 50
SUCCESS_RADIUS = 0.01  # metres
DISTANCE_REWARD = 0.5  # dense reward: minus this times the fingertip distance (m), every step

# Magnitudes at level 1.0 (each episode draws level * U(0.5, 1) * scale). The motors give up to
# 200 N m (gear 200), so a 20 N m bias is a tenth of full command.
PERTURBATIONS: tuple[PerturbationSpec, ...] = (
    PerturbationSpec(kind="actuator_gain", scale=0.4),  # up to 40 % weaker motors
    PerturbationSpec(kind="damping", target="joint0,joint1", scale=4.0),  # N m s/rad, nominal 1
    PerturbationSpec(kind="joint_friction", target="joint0,joint1", scale=4.0),  # N m of dry friction
    PerturbationSpec(kind="bias_torque", target="joint0,joint1", scale=20.0),  # N m, sign per episode
    PerturbationSpec(kind="obs_noise", scale=0.002),  # std in observation units (m, rad/s, ...)
)


class ReacherOutcome(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``success`` (the 1 cm end-of-episode rule), ``collision`` and ``fingertip_dist`` to info,
    and replaces Reacher-v5's reward with the dense shaping term (its own reward stays in
    ``info["env_reward"]``)."""

    def __init__(self, env: gym.Env, distance_reward: float = DISTANCE_REWARD) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, distance_reward=distance_reward)  # env checkers re-make it
        gym.Wrapper.__init__(self, env)
        self.distance_reward = float(distance_reward)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        check_finite(a, "builtin:reacher (Reacher-v5)")  # NaN / inf: ValueError, the arm does not move
        obs, r, term, trunc, info = self.env.step(np.clip(a, self.action_space.low, self.action_space.high))
        dist = fingertip_distance(self.env)
        info["env_reward"] = r
        info["fingertip_dist"] = dist
        info["success"] = bool((term or trunc) and dist < SUCCESS_RADIUS)
        info["collision"] = False
        return obs, -self.distance_reward * dist, term, trunc, info


def fingertip_distance(env: gym.Env) -> float:
    inner: Any = env.unwrapped
    v = inner.get_body_com("fingertip")[:2] - inner.get_body_com("target")[:2]
    return float(np.hypot(v[0], v[1]))


def make_env(distance_reward: float = DISTANCE_REWARD, **kwargs: Any) -> gym.Env:
    kwargs.setdefault("max_episode_steps", HORIZON)
    return ReacherOutcome(gym.make(ENV_ID, disable_env_checker=True, **kwargs), distance_reward)
