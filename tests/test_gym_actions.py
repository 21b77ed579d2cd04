"""Actions at the Gymnasium API: NaN / inf is a ValueError raised before the state changes; finite
values outside the Box are clipped. Proxy (batched and ``cadenza/RescueDog-v0``) and the ``--real``
tasks (the batched RealTask and the single MuJoCo envs)."""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

from cadenza.tasks.proxy.rescue_dog import RescueDogEnv, RescueDogProxy

STATE = ("pos", "yaw", "vel", "yaw_rate", "acc", "t", "prev_cmd", "cmd_buf", "dist", "ep_return")


def proxy_state(p: RescueDogProxy) -> dict[str, object]:
    return {"arrays": {k: getattr(p, k).copy() for k in STATE}, "rng": copy.deepcopy(p._rng.bit_generator.state)}


def same_state(a: dict[str, object], b: dict[str, object]) -> bool:
    return a["rng"] == b["rng"] and all(np.array_equal(a["arrays"][k], b["arrays"][k])  # type: ignore[index]
                                        for k in STATE)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_batched_proxy_refuses_non_finite_actions_before_anything_changes(bad: float) -> None:
    env = RescueDogProxy(num_envs=8, level=1.0)
    env.reset(seed=3)
    env.step(np.zeros((8, 3)))
    before = proxy_state(env)
    actions = np.zeros((8, 3))
    actions[5, 1] = bad
    with pytest.raises(ValueError, match=r"RescueDogProxy.*\(env, component\) \(5, 1\): " + str(bad).replace("+", "")):
        env.step(actions)
    assert same_state(before, proxy_state(env))
    # the env goes on exactly as if the bad call never happened
    twin = RescueDogProxy(num_envs=8, level=1.0)
    twin.reset(seed=3)
    twin.step(np.zeros((8, 3)))
    a = np.random.default_rng(0).uniform(-1, 1, (8, 3))
    for x, y in zip(env.step(a)[:4], twin.step(a)[:4], strict=True):
        assert np.array_equal(x, y)


def test_out_of_range_actions_are_clipped_to_the_box() -> None:
    big, clipped = RescueDogProxy(num_envs=4), RescueDogProxy(num_envs=4)
    big.reset(seed=1)
    clipped.reset(seed=1)
    a = np.random.default_rng(2).uniform(-5, 5, (4, 3))
    a[0, 0] = 1e300
    for x, y in zip(big.step(a)[:4], clipped.step(np.clip(a, -1.0, 1.0))[:4], strict=True):
        assert np.array_equal(x, y)


def test_single_env_refuses_nan_and_keeps_its_state() -> None:
    env = gym.make("cadenza/RescueDog-v0", level=1.0)
    env.reset(seed=0)
    core = env.unwrapped._core  # type: ignore[attr-defined]
    before = proxy_state(core)
    with pytest.raises(ValueError, match=r"cadenza/RescueDog-v0: non-finite action at component 2: nan"):
        env.step(np.array([0.1, 0.0, np.nan], dtype=np.float32))
    assert same_state(before, proxy_state(core))
    obs, *_ = env.step(np.array([2.0, -3.0, 0.5], dtype=np.float32))  # clipped, not refused
    assert np.all(np.isfinite(obs))


def _checked(env: gym.Env) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both checkers warn about the unbounded observation Box
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False, skip_render_check=True)


def test_proxy_passes_gymnasium_and_sb3_env_checkers() -> None:
    _checked(RescueDogEnv(level=1.0))
    _checked(gym.make("cadenza/RescueDog-v0", level=0.5).unwrapped)


# ---------------------------------------------------------------------------------------------- --real
pytest.importorskip("mujoco")


def test_real_batched_task_refuses_nan_before_any_env_steps() -> None:
    from cadenza.tasks.real.batched import RealTask
    from cadenza.tasks.real.reacher import make_env

    task = RealTask(make_env, name="reacher", num_envs=2, level=1.0, seed=0)
    task.reset(seed=0)
    qpos = [e.unwrapped.data.qpos.copy() for e in task.envs]
    steps = [s.t for s in task._slots]
    with pytest.raises(ValueError, match=r"mujoco:reacher.*\(1, 0\): nan"):
        task.step(np.array([[0.0, 0.0], [np.nan, 0.0]]))
    assert all(np.array_equal(q, e.unwrapped.data.qpos) for q, e in zip(qpos, task.envs, strict=True))
    assert steps == [s.t for s in task._slots]
    task.close()


@pytest.mark.parametrize("which", ["reacher", "rescue-dog"])
def test_real_single_envs_refuse_nan_clip_the_rest_and_pass_the_checkers(which: str) -> None:
    from cadenza.tasks.real import reacher, rescue_dog

    make = {"reacher": reacher.make_env, "rescue-dog": rescue_dog.make_env}[which]
    env = make()
    env.reset(seed=0)
    data = env.unwrapped.data
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    bad = np.zeros(env.action_space.shape)
    bad[-1] = np.inf
    with pytest.raises(ValueError, match=f"builtin:{which}.*component {bad.size - 1}: inf"):
        env.step(bad)
    assert np.array_equal(qpos, data.qpos) and np.array_equal(qvel, data.qvel)
    # out of the Box: clipped, the same step as the clipped action
    twin = make()
    twin.reset(seed=0)
    a = np.full(env.action_space.shape, 7.0)
    o1, r1, *_ = env.step(a)
    o2, r2, *_ = twin.step(np.clip(a, env.action_space.low, env.action_space.high))
    assert np.array_equal(o1, o2) and r1 == r2
    env.close()
    twin.close()
    _checked(make())
