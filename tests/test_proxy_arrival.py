"""The proxy's opt-in "arrive and stop" rule (``arrival="stop"``), its config field and the default left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.project.config import ConfigError, load_project
from cadenza.tasks.factory import make_task
from cadenza.tasks.proxy.rescue_dog import (
    NEAR_DEBRIS_GAP,
    NEAR_DIST,
    NOMINAL,
    STOP_SPEED,
    RescueDogProxy,
)


def _rollout(env: RescueDogProxy, seed: int, steps: int) -> list[np.ndarray]:
    """The base plus seeded noise; every array the env returns, step by step."""
    base, act_rng = RescueDogBase(), np.random.default_rng(11)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(base(obs) + act_rng.normal(0.0, 0.3, obs[:, :3].shape))
        out += [obs, r, term, trunc, info["success"], info["collision"]]
    return out


def _place(env: RescueDogProxy, speed: float) -> None:
    """Env 0 one step before the goal centre, heading for it at ``speed`` (m/s), debris far away."""
    env.obst[0] = 50.0
    env.goal[0] = (3.0, 0.0)
    env.yaw[0] = 0.0
    env.yaw_rate[0] = 0.0
    env.pos[0] = (3.0 - speed * 0.02, 0.0)
    env.vel[0] = (speed, 0.0)
    env.cmd_buf[:, 0] = 0.0


def _coast_command(speed: float) -> np.ndarray:
    """The forward command that exactly cancels the nominal ground friction at ``speed``."""
    return np.array([[NOMINAL.drag * speed / NOMINAL.force_max, 0.0, 0.0]])


def test_default_is_the_reach_rule_bit_for_bit() -> None:
    default = _rollout(RescueDogProxy(num_envs=16, level=1.0), seed=5, steps=500)
    explicit = _rollout(RescueDogProxy(num_envs=16, level=1.0, arrival="reach"), seed=5, steps=500)
    assert len(default) == len(explicit)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.concatenate(default[4::6]).any()  # some episodes succeeded along the way


def test_a_fast_pass_through_the_goal_neither_succeeds_nor_ends_the_episode() -> None:
    env = RescueDogProxy(num_envs=1, level=0.0, arrival="stop", autoreset=False)
    env.reset(seed=0)
    _place(env, speed=1.0)
    _, _, term, trunc, info = env.step(_coast_command(1.0))
    assert np.hypot(*(env.pos[0] - env.goal[0])) < NOMINAL.goal_radius  # inside the radius ...
    assert not info["success"][0] and not term[0] and not trunc[0]  # ... but too fast: go on
    # the same pass under the default rule is a success
    reach = RescueDogProxy(num_envs=1, level=0.0, autoreset=False)
    reach.reset(seed=0)
    _place(reach, speed=1.0)
    _, _, term, _, info = reach.step(_coast_command(1.0))
    assert info["success"][0] and term[0]


def test_a_slow_arrival_succeeds_and_ends_the_episode() -> None:
    env = RescueDogProxy(num_envs=1, level=0.0, arrival="stop", autoreset=False)
    env.reset(seed=0)
    slow = STOP_SPEED * 0.5
    _place(env, speed=slow)
    _, r, term, _, info = env.step(_coast_command(slow))
    assert info["success"][0] and term[0] and r[0] == 1.0


def test_the_base_overshoots_and_comes_back_under_the_stop_rule() -> None:
    """Driven by the real base, stop-rule successes end slow, and some episodes pass the goal first."""
    env = RescueDogProxy(num_envs=64, level=1.0, arrival="stop", autoreset=False)
    base = RescueDogBase()
    obs, _ = env.reset(seed=2)
    done = np.zeros(64, bool)
    passed = np.zeros(64, bool)  # inside the radius at some step that did not end the episode
    for _ in range(env.horizon):
        obs, _, term, trunc, info = env.step(base(obs))
        inside = np.hypot(*(env.pos - env.goal).T) < NOMINAL.goal_radius
        speed = np.hypot(*env.vel.T)
        ended = (term | trunc) & ~done
        assert np.all(speed[info["success"] & ended] < STOP_SPEED)
        passed |= inside & ~(term | trunc) & ~done
        done |= ended
        if done.all():
            break
    assert passed.any()


def test_near_starts_put_the_goal_close_and_the_debris_beyond_it() -> None:
    env = RescueDogProxy(num_envs=400, level=0.5, arrival="stop")
    env.reset(seed=9)
    dist = np.hypot(*env.goal.T)
    near = dist < 4.0
    assert 0.2 < near.mean() < 0.4  # about NEAR_SHARE of them
    assert np.all((dist[near] >= NEAR_DIST[0]) & (dist[near] <= NEAR_DIST[1]))
    heading = env.goal[near] / dist[near, None]
    along = np.einsum("nkd,nd->nk", env.obst[near], heading)
    assert np.all(along - dist[near, None] >= NEAR_DEBRIS_GAP - 0.1 - 1e-9)
    bearing = np.angle(np.exp(1j * (env.yaw[near] - np.arctan2(heading[:, 1], heading[:, 0]))))
    assert np.abs(bearing).max() > 2.0  # some start facing away from the goal
    again = RescueDogProxy(num_envs=400, level=0.5, arrival="stop")
    again.reset(seed=9)
    np.testing.assert_array_equal(env.goal, again.goal)


def test_bad_arrival_is_refused() -> None:
    with pytest.raises(ValueError, match="arrival"):
        RescueDogProxy(num_envs=1, arrival="halt")  # type: ignore[arg-type]


def _project(tmp_path: Path, task: str) -> Path:
    (tmp_path / "cadenza.toml").write_text(f'[project]\nname = "p"\n[task]\n{task}\n')
    return tmp_path


def test_config_field_reaches_the_task(tmp_path: Path) -> None:
    assert make_task(load_project(_project(tmp_path, "")), num_envs=2).arrival == "reach"
    task = make_task(load_project(_project(tmp_path, 'arrival = "stop"')), num_envs=2)
    assert task.arrival == "stop"


def test_config_rejects_an_unknown_arrival_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_project(_project(tmp_path, 'arrival = "halt"'))
    msg = str(e.value)
    assert "\n" not in msg and "task.arrival" in msg and "cadenza.toml" in msg and "'stop'" in msg
