"""Rescue-dog proxy: the invariants that keep seeded rollouts reproducible however fast the code gets.

The vectorised proxy takes shortcuts for speed (cached trigonometry, observations recomputed only
for the envs that restart, a comparison-table ranking of obstacles). These tests pin what those
shortcuts must preserve, against plain reference computations written from the documented model:
the observation is a pure function of the state, the envs that restart see exactly what a fresh
observation shows, the random stream is consumed in the documented order and shapes, and the
physics reads the state as it is, even after outside code has written into it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.tasks.proxy import rescue_dog as rd
from cadenza.tasks.proxy.rescue_dog import (
    ACT_DIM,
    BEHIND_PENALTY,
    DT,
    NOMINAL,
    NUM_OBSTACLES,
    OBS_DIM,
    PERTURB,
    RescueDogProxy,
)

RESET_UNIFORMS_PER_ENV = 3 + 3 * NUM_OBSTACLES + 6 + 2 + 1  # one 64-bit draw each, see _reset_envs


def reference_obs(env: RescueDogProxy) -> np.ndarray:
    """The noise-free observation of ``env``'s current state, from the documented formulas."""
    c, s = np.cos(env.yaw), np.sin(env.yaw)

    def body(v: np.ndarray, scale: float = 1.0) -> np.ndarray:  # world (k, 2) -> body frame, scaled
        return np.stack([(c * v[:, 0] + s * v[:, 1]) * scale, (-s * v[:, 0] + c * v[:, 1]) * scale], 1)

    g = env.goal - env.pos
    rel = env.obst - env.pos[:, None, :]
    clear = np.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2) - env.obst_r - NOMINAL.robot_radius
    behind = (rel * g[:, None, :]).sum(-1) < 0.0
    order = np.argsort(clear + BEHIND_PENALTY * behind, axis=1, kind="stable")[:, :2]
    rows = np.arange(env.num_envs)[:, None]
    near, near_clear = rel[rows, order], clear[rows, order]
    obs = np.concatenate([
        body(g, 0.2), env.dist[:, None] * 0.2, body(env.vel), env.yaw_rate[:, None],
        body(near[:, 0]), near_clear[:, :1], body(near[:, 1]), near_clear[:, 1:],
        body(env.acc, 1.0 / 3.0), env.prev_cmd, (1.0 - env.t / env.horizon)[:, None],
    ], axis=1)
    assert obs.shape == (env.num_envs, OBS_DIM)
    return obs.astype(np.float32)


def reference_physics(env: RescueDogProxy, cmd: np.ndarray) -> dict[str, np.ndarray]:
    """One 20 ms step of the documented dynamics from a copy of ``env``'s state."""
    nom, lat = NOMINAL, env.latency[:, None]
    applied = np.where(lat == 0, cmd, np.where(lat == 1, env.cmd_buf[0], env.cmd_buf[1]))
    thrust = 0.5 * (1.0 + env.gain_left)
    fx = nom.force_max * applied[:, 0] * thrust
    fy = nom.force_max * nom.lateral_ratio * applied[:, 1] * thrust
    tau = nom.torque_max * applied[:, 2] * thrust + PERTURB.asym_torque * (1.0 - env.gain_left) * applied[:, 0]
    c, s = np.cos(env.yaw), np.sin(env.yaw)
    acc = np.stack([(c * fx - s * fy + env.ext_force[:, 0]) / env.mass + env.slope[:, 0] - env.drag * env.vel[:, 0],
                    (s * fx + c * fy + env.ext_force[:, 1]) / env.mass + env.slope[:, 1] - env.drag * env.vel[:, 1]], 1)
    vel = env.vel + acc * DT
    yaw_rate = env.yaw_rate + (tau - nom.yaw_drag * env.yaw_rate) / (nom.inertia * env.mass) * DT
    return {"acc": acc, "vel": vel, "pos": env.pos + vel * DT, "yaw_rate": yaw_rate, "yaw": env.yaw + yaw_rate * DT}


@pytest.mark.parametrize("num_envs", [1, 70])  # 70: above the size where cos/sin of the yaw are kept
def test_observation_is_the_documented_function_of_the_state(num_envs: int) -> None:
    """Level 0 has no sensor noise: every observation, restarted envs included, matches the reference bit for bit."""
    env = RescueDogProxy(num_envs=num_envs, level=0.0, horizon=40)  # short episodes: many restarts
    actions = np.random.default_rng(3).uniform(-1.5, 1.5, (160, num_envs, ACT_DIM))
    obs, _ = env.reset(seed=8)
    np.testing.assert_array_equal(obs, reference_obs(env))
    restarts = 0
    for a in actions:
        obs, _, term, trunc, _ = env.step(a)
        np.testing.assert_array_equal(obs, reference_obs(env))
        done = term | trunc
        if done.any():
            restarts += int(done.sum())
            # the restarted rows equal a full, fresh observation of the new episodes
            np.testing.assert_array_equal(obs, env._observe())
            assert (obs[done, 17] == 1.0).all() and (obs[done, 3:6] == 0.0).all()
    assert restarts >= 3 * num_envs


def test_two_nearest_columns_are_the_two_lowest_ranked_obstacles() -> None:
    """Driven by the built-in base, so that some obstacles have been passed (they rank last)."""
    env = RescueDogProxy(num_envs=200, level=0.0)
    base = RescueDogBase()
    obs, _ = env.reset(seed=4)
    for _ in range(120):
        obs, *_ = env.step(base(obs))
    rel = env.obst - env.pos[:, None, :]
    clear = env._clearance()
    behind = (rel * (env.goal - env.pos)[:, None, :]).sum(-1) < 0.0
    key = clear + BEHIND_PENALTY * behind
    assert behind.any() and (~behind).any()
    best = np.sort(key, axis=1)
    for col, rank in ((8, 0), (11, 1)):
        hit = key == best[:, rank:rank + 1]
        assert (hit.sum(axis=1) == 1).all(), "no ties in a random state"
        # the reported clearance is the one of the obstacle with that rank (no noise at level 0)
        np.testing.assert_array_equal(obs[:, col], clear[hit].astype(np.float32))


def test_ranking_table_matches_a_stable_sort_ties_included() -> None:
    rng = np.random.default_rng(1)
    for key in (rng.normal(size=(500, NUM_OBSTACLES)),
                rng.integers(0, 3, size=(2000, NUM_OBSTACLES)).astype(np.float64)):  # many exact ties
        k = len(key)
        zeros = np.zeros((NUM_OBSTACLES, k))
        # with no goal offset nothing counts as passed: the key is the clearance itself
        flat = rd._two_nearest(zeros, zeros, np.ascontiguousarray(key.T), np.zeros(k), np.zeros(k))
        order = np.argsort(key, axis=1, kind="stable")[:, :2]
        np.testing.assert_array_equal(flat, order.T * k + np.arange(k))


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_random_stream_is_consumed_in_the_documented_order(level: float) -> None:
    """Resets draw one uniform per parameter; each observation at level > 0 draws (num_envs, 18) normals,
    once before and once after the same-step autoreset."""
    n, seed = 12, 21
    env = RescueDogProxy(num_envs=n, level=level, horizon=25)
    ref = np.random.default_rng(seed)

    def observe() -> None:
        if level > 0.0:
            ref.standard_normal((n, OBS_DIM))

    env.reset(seed=seed)
    ref.random(RESET_UNIFORMS_PER_ENV * n)
    observe()
    assert env._rng.bit_generator.state == ref.bit_generator.state
    acts = np.random.default_rng(5).uniform(-1.0, 1.0, (60, n, ACT_DIM))
    restarts = 0
    for a in acts:
        _, _, term, trunc, _ = env.step(a)
        observe()
        k = int((term | trunc).sum())
        if k:
            restarts += k
            ref.random(RESET_UNIFORMS_PER_ENV * k)
            observe()
        assert env._rng.bit_generator.state == ref.bit_generator.state
    assert restarts >= n


def test_final_obs_is_the_observation_before_the_restart() -> None:
    """An autoresetting env and one without autoreset agree, up to the first episode end, bit for bit."""
    n = 32
    auto = RescueDogProxy(num_envs=n, level=1.0, autoreset=True)
    manual = RescueDogProxy(num_envs=n, level=1.0, autoreset=False)
    a0, _ = auto.reset(seed=6)
    m0, _ = manual.reset(seed=6)
    np.testing.assert_array_equal(a0, m0)
    acts = np.random.default_rng(2).uniform(-1.0, 1.0, (400, n, ACT_DIM))
    for a in acts:
        ao, ar, at, atr, ainfo = auto.step(a)
        mo, mr, mt, mtr, minfo = manual.step(a)
        for x, y in ((ar, mr), (at, mt), (atr, mtr), (ainfo["success"], minfo["success"])):
            np.testing.assert_array_equal(x, y)
        if (at | atr).any():
            np.testing.assert_array_equal(ainfo["final_obs"], mo)
            np.testing.assert_array_equal(ainfo["final_obs"], minfo["final_obs"])
            break
        np.testing.assert_array_equal(ao, mo)
    else:
        pytest.fail("no episode ended")


@pytest.mark.parametrize("num_envs", [1, 70])
def test_physics_reads_state_written_from_outside(num_envs: int) -> None:
    """The mission layer writes the body's pose into the proxy: the next physics step must use it."""
    env = RescueDogProxy(num_envs=num_envs, level=1.0)
    env.reset(seed=9)
    rng = np.random.default_rng(4)
    for i in range(6):
        env.step(rng.uniform(-1.0, 1.0, (num_envs, ACT_DIM)))
        # new headings, one of them a signed zero (equal as numbers, not as bits)
        env.yaw[:] = rng.uniform(-np.pi, np.pi, num_envs)
        env.yaw[0] = 0.0 if i % 2 else -0.0
        env.vel[0] = [0.0, 0.0]
        cmd = np.clip(rng.uniform(-1.2, 1.2, (num_envs, ACT_DIM)), -1.0, 1.0)
        expect = reference_physics(copy.deepcopy(env), cmd)
        env._physics(cmd)
        for name, value in expect.items():
            np.testing.assert_array_equal(getattr(env, name), value, err_msg=name)
