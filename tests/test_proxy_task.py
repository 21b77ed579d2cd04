"""The rescue-dog proxy task: the Task protocol, determinism, Gymnasium compliance, rewards, the base."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cadenza  # noqa: F401  (registers cadenza/RescueDog-v0)
from cadenza.base.rescue_dog import RescueDogBase
from cadenza.tasks.interface import Task
from cadenza.tasks.proxy.rescue_dog import PROGRESS_REWARD, RescueDogEnv, RescueDogProxy

OBS_DIM, ACT_DIM = 18, 3


def rollout(seed: int, steps: int = 600, num_envs: int = 24, level: float = 1.0, action_seed: int = 7,
            reward: str = "sparse") -> dict[str, np.ndarray]:
    """Drive the proxy with the base plus seeded noise (so episodes end both ways) and record everything."""
    env = RescueDogProxy(num_envs=num_envs, level=level, reward=reward)
    base = RescueDogBase()
    act_rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "reward", "terminated", "truncated",
                                                        "success", "collision", "final_obs")}
    rec["obs"].append(obs)
    for _ in range(steps):
        a = base(obs) + act_rng.normal(0.0, 0.3, (num_envs, ACT_DIM))
        obs, r, term, trunc, info = env.step(a)
        for k, v in (("obs", obs), ("reward", r), ("terminated", term), ("truncated", trunc),
                     ("success", info["success"]), ("collision", info["collision"]),
                     ("final_obs", info.get("final_obs", np.zeros_like(obs)))):
            rec[k].append(v)
    return {k: np.stack(v) for k, v in rec.items()}


def first_episode_outcomes(level: float, num_envs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Base alone: success and collision of the first episode of every env (no bias toward short episodes)."""
    env = RescueDogProxy(num_envs=num_envs, level=level)
    base = RescueDogBase()
    obs, _ = env.reset(seed=seed)
    done = np.zeros(num_envs, bool)
    success = np.zeros(num_envs, bool)
    collision = np.zeros(num_envs, bool)
    for _ in range(env.spec.horizon):
        obs, _, term, trunc, info = env.step(base(obs))
        new = (term | trunc) & ~done
        success[new] = info["success"][new]
        collision[new] = info["collision"][new]
        done |= new
        if done.all():
            break
    assert done.all(), "every episode ends within the horizon"
    return success, collision


# --------------------------------------------------------------------------------------------- protocol

def test_spec_and_task_protocol() -> None:
    env = RescueDogProxy(num_envs=5, level=0.3)
    assert isinstance(env, Task)
    spec = env.spec
    assert (spec.label, spec.obs_dim, spec.act_dim, spec.control_hz) == ("proxy", OBS_DIM, ACT_DIM, 50.0)
    assert spec.horizon > 0
    assert env.level == pytest.approx(0.3)
    assert env.single_action_space.shape == (ACT_DIM,)
    assert env.action_space.shape == (5, ACT_DIM)
    obs, info = env.reset(seed=0)
    assert obs.shape == (5, OBS_DIM) and obs.dtype == np.float32
    assert isinstance(info, dict)
    obs, r, term, trunc, info = env.step(np.zeros((5, ACT_DIM)))
    assert obs.shape == (5, OBS_DIM) and obs.dtype == np.float32
    assert r.shape == (5,) and r.dtype == np.float32
    for key, arr in (("terminated", term), ("truncated", trunc),
                     ("success", info["success"]), ("collision", info["collision"])):
        assert arr.shape == (5,), key
        assert arr.dtype == np.bool_, key
    env.close()


def test_info_flags_match_terminations_and_sparse_reward() -> None:
    rec = rollout(seed=3, num_envs=32)
    succ, coll, term, trunc, rew = rec["success"], rec["collision"], rec["terminated"], rec["truncated"], rec["reward"]
    assert succ.any() and coll.any(), "the noisy base both reaches goals and hits debris"
    assert not (succ & coll).any()
    np.testing.assert_array_equal(term, succ | coll)
    assert not (term & trunc).any()
    np.testing.assert_array_equal(rew, succ.astype(np.float32) - coll.astype(np.float32))


def test_same_step_autoreset() -> None:
    env = RescueDogProxy(num_envs=8, level=0.0, horizon=20)
    obs, _ = env.reset(seed=1)
    for t in range(1, 21):
        obs, _, term, trunc, info = env.step(np.zeros((8, ACT_DIM)))
        if t < 20:
            assert not (term | trunc).any()
            assert "final_obs" not in info
    # standing still never reaches the goal: every env is truncated at the horizon, not terminated
    assert trunc.all() and not term.any()
    np.testing.assert_array_equal(info["_final_obs"], np.ones(8, bool))
    final = info["final_obs"]
    assert final[:, 17] == pytest.approx(0.0)  # the old episode used all its time
    np.testing.assert_array_equal(obs[:, 17], np.ones(8, np.float32))  # the new one starts with all of it
    np.testing.assert_array_equal(obs[:, 14:17], np.zeros((8, 3), np.float32))
    assert not np.array_equal(final[:, :2], obs[:, :2]), "a new goal was drawn"
    np.testing.assert_array_equal(info["episode"]["l"], np.full(8, 20))


# --------------------------------------------------------------------------------------------- determinism

def test_same_seed_is_bit_identical() -> None:
    a, b = rollout(seed=11), rollout(seed=11)
    assert (a["terminated"] | a["truncated"]).sum() > 10, "the run crosses several autoresets"
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


def test_different_seed_differs() -> None:
    a, b = rollout(seed=11), rollout(seed=12)
    assert not np.array_equal(a["obs"][0], b["obs"][0])
    assert not np.array_equal(a["obs"], b["obs"])


def test_reset_with_seed_restarts_the_stream() -> None:
    env = RescueDogProxy(num_envs=4, level=1.0)
    obs1, _ = env.reset(seed=5)
    steps1 = [env.step(np.full((4, ACT_DIM), 0.5))[0] for _ in range(30)]
    obs2, _ = env.reset(seed=5)
    steps2 = [env.step(np.full((4, ACT_DIM), 0.5))[0] for _ in range(30)]
    assert obs1.tobytes() == obs2.tobytes()
    assert np.stack(steps1).tobytes() == np.stack(steps2).tobytes()


# --------------------------------------------------------------------------------------------- actions

def test_actions_outside_bounds_are_clipped() -> None:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-4.0, 4.0, (60, 6, ACT_DIM))
    outs = []
    for acts in (actions, np.clip(actions, -1.0, 1.0)):
        env = RescueDogProxy(num_envs=6, level=1.0)
        env.reset(seed=2)
        outs.append(np.stack([env.step(a)[0] for a in acts]))
    assert outs[0].tobytes() == outs[1].tobytes()
    # the last command the legs received is reported in the observation, within [-1, 1] (+ sensor noise)
    assert np.abs(outs[0][..., 14:17]).max() < 1.3


def test_action_shape_is_checked() -> None:
    env = RescueDogProxy(num_envs=4, level=1.0)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(np.zeros((3, ACT_DIM)))


# --------------------------------------------------------------------------------------------- level

@pytest.mark.parametrize("bad", [-0.01, 1.01, 5.0, float("nan")])
def test_set_level_validation(bad: float) -> None:
    env = RescueDogProxy(num_envs=2, level=0.5)
    with pytest.raises(ValueError, match="level"):
        env.set_level(bad)
    assert env.level == 0.5
    with pytest.raises(ValueError, match="level"):
        RescueDogProxy(num_envs=2, level=bad)
    with pytest.raises(ValueError, match="level"):
        env.reset(seed=0, options={"level": bad})


def test_level_zero_is_the_nominal_robot() -> None:
    env = RescueDogProxy(num_envs=16, level=1.0)
    obs_noisy, _ = env.reset(seed=0)
    env.set_level(0.0)
    assert env.level == 0.0
    obs, _ = env.reset(seed=0, options={"level": 0.0})
    # no sensor noise at level 0: the previous command is exactly zero after a reset
    np.testing.assert_array_equal(obs[:, 14:17], 0.0)
    assert np.abs(obs_noisy[:, 14:17]).max() > 0.0
    # no wind, no slope: with zero commands the body does not move
    for _ in range(30):
        obs, *_ = env.step(np.zeros((16, ACT_DIM)))
    np.testing.assert_array_equal(obs[:, 3:6], 0.0)
    env.reset(seed=0, options={"level": 0.7})
    assert env.level == pytest.approx(0.7)


# --------------------------------------------------------------------------------------------- reward

def test_reward_mode_validation() -> None:
    with pytest.raises(ValueError, match="reward"):
        RescueDogProxy(num_envs=1, reward="shaped")  # type: ignore[arg-type]


def test_dense_reward_adds_progress() -> None:
    sparse = rollout(seed=4, level=0.0, reward="sparse")
    dense = rollout(seed=4, level=0.0, reward="dense")
    # the reward does not change the dynamics
    assert sparse["obs"].tobytes() == dense["obs"].tobytes()
    progress = dense["reward"].astype(np.float64) - sparse["reward"]
    assert np.abs(progress).max() < 0.2, "per-step progress is bounded by speed * dt"
    assert progress.mean() > 0.0, "the base makes progress toward the goal"
    # over one episode, the progress terms add up to PROGRESS_REWARD per metre covered toward the goal
    # (obs 2 is dist / 5)
    obs, final, done = sparse["obs"], sparse["final_obs"], sparse["terminated"] | sparse["truncated"]
    for env_i in range(obs.shape[1]):
        ends = np.flatnonzero(done[:, env_i])
        assert ends.size, "every env finished an episode"
        end = ends[0]
        covered = PROGRESS_REWARD * 5.0 * (obs[0, env_i, 2].astype(np.float64) - final[end, env_i, 2])
        assert progress[: end + 1, env_i].sum() == pytest.approx(covered, abs=1e-4)


# --------------------------------------------------------------------------------------------- Gymnasium

def _check(env: gym.Env) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    allowed = ("infinity", "different from the unwrapped")
    return [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]


def test_check_env_unwrapped() -> None:
    env = gym.make("cadenza/RescueDog-v0", level=1.0)
    assert isinstance(env.unwrapped, RescueDogEnv)
    assert _check(env.unwrapped) == []


def test_check_env_wrapped() -> None:
    env = gym.make("cadenza/RescueDog-v0", level=1.0)
    assert _check(env) == []


def test_single_env_episode() -> None:
    env = gym.make("cadenza/RescueDog-v0", level=0.0)
    base = RescueDogBase()
    obs, _ = env.reset(seed=3)
    for _ in range(env.unwrapped._core.horizon):  # type: ignore[attr-defined]
        assert env.observation_space.contains(obs)
        obs, r, term, trunc, info = env.step(base(obs[None])[0].astype(np.float32))
        assert isinstance(info["success"], bool) and isinstance(info["collision"], bool)
        if term or trunc:
            break
    assert term or trunc
    assert r == float(info["success"]) - float(info["collision"])


def test_vector_entry_point() -> None:
    venv = gym.make_vec("cadenza/RescueDog-v0", num_envs=4, vectorization_mode="vector_entry_point", level=0.5)
    assert isinstance(venv, RescueDogProxy)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, OBS_DIM)
    assert venv.level == 0.5


# --------------------------------------------------------------------------------------------- the base

def test_base_shapes_and_bounds() -> None:
    base = RescueDogBase()
    obs = np.random.default_rng(0).normal(0.0, 3.0, (256, OBS_DIM)).astype(np.float32)
    a = base(obs)
    assert a.shape == (256, ACT_DIM)
    assert np.all(np.isfinite(a)) and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, base(obs.copy()))


def test_base_success_drops_with_the_perturbation_level() -> None:
    n = 1000
    s0, c0 = first_episode_outcomes(0.0, n, seed=123)
    s1, _ = first_episode_outcomes(1.0, n, seed=123)
    rate0, rate1 = s0.mean(), s1.mean()
    assert rate0 >= 0.93, f"the base alone should nearly always succeed on the nominal robot, got {rate0:.3f}"
    assert c0.mean() <= 0.07
    assert rate0 - rate1 >= 0.15, f"level 1.0 should hurt the base: {rate0:.3f} -> {rate1:.3f}"
    assert rate1 > 0.1, "level 1.0 must stay solvable-looking for the base (a residual corrects it)"
