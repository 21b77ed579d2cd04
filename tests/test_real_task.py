"""The real-simulator seam on real MuJoCo: the Task protocol, determinism, perturbations, built-ins."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from cadenza.base.loader import load_base
from cadenza.project.config import PerturbationSpec, load_project
from cadenza.tasks.factory import base_source, make_task
from cadenza.tasks.interface import Task
from cadenza.tasks.real import rescue_dog as dog
from cadenza.tasks.real.batched import RealTask
from cadenza.tasks.real.reacher import SUCCESS_RADIUS, fingertip_distance
from cadenza.tasks.real.reacher import make_env as make_reacher

ROOT = Path(__file__).resolve().parent.parent
REACHER = ROOT / "examples" / "reacher"


def reacher_task(perturbations: list[PerturbationSpec], level: float, num_envs: int = 2, seed: int = 0) -> RealTask:
    return RealTask(make_reacher, name="reacher", num_envs=num_envs, level=level, seed=seed,
                    perturbations=perturbations)


def fingertip_path(task: RealTask, actions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fingertip xy of every env at every step under a fixed open-loop action sequence."""
    task.reset(seed=seed)
    out = []
    for a in actions:
        task.step(a)
        out.append([env.unwrapped.get_body_com("fingertip")[:2].copy() for env in task.envs])
    return np.array(out)


def open_loop(steps: int, num_envs: int, act_dim: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.6, 0.6, (steps, num_envs, act_dim))


def test_reacher_follows_the_task_protocol() -> None:
    task = make_task(load_project(REACHER), num_envs=3, level=1.0, real=True, seed=0)
    assert isinstance(task, Task)
    assert task.spec.label == "mujoco:reacher"
    assert (task.spec.obs_dim, task.spec.act_dim, task.spec.horizon, task.spec.control_hz) == (10, 2, 50, 50.0)
    obs, _ = task.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (3, 10)
    actions = open_loop(50, 3, 2)
    for t, a in enumerate(actions):
        obs, r, term, trunc, info = task.step(a)
        assert obs.dtype == np.float32 and r.dtype == np.float32
        assert info["success"].dtype == bool and info["success"].shape == (3,)
        assert info["collision"].dtype == bool and not info["collision"].any()
        if t < 49:
            assert not (term | trunc).any() and "final_obs" not in info and not info["success"].any()
    assert trunc.all() and not term.any()  # Reacher never terminates: every episode runs 50 steps
    assert info["_final_obs"].all() and info["final_obs"].shape == (3, 10)
    assert list(info["episode"]["l"]) == [50, 50, 50]
    np.testing.assert_array_equal(info["episode"]["r"], info["success"].astype(float))  # sparse reward
    # same-step autoreset: the returned obs already starts the next episode
    assert not np.allclose(obs, info["final_obs"])
    task.close()


def test_actions_map_onto_the_env_range() -> None:
    """[-1, 1] is stretched onto the env's own Box (Pendulum-v1 takes torques in [-2, 2])."""
    task = RealTask(lambda: gym.make("Pendulum-v1"), name="Pendulum-v1", num_envs=2, level=0.0)
    assert task.spec.label == "gym:Pendulum-v1"  # no MuJoCo model behind it
    task.reset(seed=0)
    task.step(np.array([[1.0], [-0.5]]))
    assert [float(e.unwrapped.last_u) for e in task.envs] == [2.0, -1.0]
    task.close()


def test_same_seed_same_rollout_and_another_seed_differs() -> None:
    project = load_project(REACHER)
    actions = open_loop(60, 4, 2)

    def rollout(seed: int) -> list[np.ndarray]:
        task = make_task(project, num_envs=4, level=1.0, real=True, seed=seed)
        out = [task.reset(seed=seed)[0]]
        for a in actions:
            obs, r, _term, _trunc, info = task.step(a)
            out += [obs, r, info["success"]]
        out += [np.array([p.magnitude for i in range(4) for p in task.perturbations(i)])]
        task.close()
        return out

    first, again, other = rollout(5), rollout(5), rollout(6)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[-1], other[-1])


def test_level_zero_is_the_nominal_arm() -> None:
    """At level 0 every perturbation is switched off: the same rollout as with none configured."""
    from cadenza.tasks.real.reacher import PERTURBATIONS

    actions = open_loop(50, 2, 2)
    with_perts = fingertip_path(reacher_task(list(PERTURBATIONS), level=0.0), actions)
    without = fingertip_path(reacher_task([], level=0.0), actions)
    np.testing.assert_array_equal(with_perts, without)


@pytest.mark.parametrize("spec", [
    PerturbationSpec(kind="actuator_gain", scale=0.4),
    PerturbationSpec(kind="damping", target="joint0,joint1", scale=4.0),
    PerturbationSpec(kind="joint_friction", target="joint0,joint1", scale=4.0),
    PerturbationSpec(kind="bias_torque", target="joint0,joint1", scale=20.0),
    PerturbationSpec(kind="mass", target="body*", scale=100.0),  # the links are light next to the armature
    PerturbationSpec(kind="latency", scale=2.0),
    PerturbationSpec(kind="push", target="body1", scale=200.0),
], ids=lambda s: s.kind)
def test_each_reacher_perturbation_moves_the_fingertip(spec: PerturbationSpec) -> None:
    """Same seed, same open-loop commands: level 1 takes the fingertip somewhere else than level 0."""
    actions = open_loop(50, 2, 2)
    nominal = fingertip_path(reacher_task([spec], level=0.0), actions)
    perturbed = fingertip_path(reacher_task([spec], level=1.0), actions)
    gap_mm = 1000.0 * np.abs(perturbed - nominal).max()
    assert gap_mm > 2.0, f"{spec.kind} moved the fingertip by only {gap_mm:.3f} mm"


def test_model_parameters_are_restored_between_episodes() -> None:
    spec = PerturbationSpec(kind="actuator_gain", scale=0.5)
    task = reacher_task([spec], level=1.0, num_envs=1)
    model = task.envs[0].unwrapped.model
    nominal = model.actuator_gear[:, 0].copy()
    task.reset(seed=0)
    gains = []
    for _ in range(3):  # three episodes: the loss is redrawn each time, never compounded
        m = task.perturbations(0)[0].magnitude
        assert 0.25 <= m <= 0.5
        np.testing.assert_allclose(model.actuator_gear[:, 0], nominal * (1.0 - m))
        gains.append(m)
        for _ in range(50):
            task.step(np.zeros((1, 2)))
    assert len(set(gains)) == 3
    task.set_level(0.0)
    for _ in range(50):
        task.step(np.zeros((1, 2)))
    np.testing.assert_array_equal(model.actuator_gear[:, 0], nominal)


def test_set_level_applies_from_the_next_episode() -> None:
    task = reacher_task([PerturbationSpec(kind="bias_torque", target="joint0", scale=10.0)], level=0.0, num_envs=1)
    task.reset(seed=0)
    task.step(np.zeros((1, 2)))
    task.set_level(1.0)
    assert task.level == 1.0 and task.perturbations(0)[0].magnitude == 0.0
    for _ in range(49):
        task.step(np.zeros((1, 2)))
    assert 5.0 <= task.perturbations(0)[0].magnitude <= 10.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        task.set_level(1.5)


def test_observation_noise_only_touches_the_chosen_indices() -> None:
    spec = PerturbationSpec(kind="obs_noise", target="4:6", scale=0.01)
    clean, noisy = reacher_task([spec], level=0.0), reacher_task([spec], level=1.0)
    a, b = clean.reset(seed=3)[0], noisy.reset(seed=3)[0]
    np.testing.assert_array_equal(np.delete(a, [4, 5], axis=1), np.delete(b, [4, 5], axis=1))
    assert 1e-4 < np.abs(a[:, 4:6] - b[:, 4:6]).max() < 0.1


def test_reacher_success_is_the_end_of_episode_one_centimetre_rule() -> None:
    project = load_project(REACHER)
    task = make_task(project, num_envs=8, level=0.0, real=True, seed=2)
    base = load_base(base_source(project, real=True), project.root, task.spec.act_dim)
    obs, _ = task.reset(seed=2)
    for _ in range(50):
        obs, _, _, _trunc, info = task.step(base(obs))
    dists = np.hypot(info["final_obs"][:, 8], info["final_obs"][:, 9])
    np.testing.assert_array_equal(info["success"], dists < SUCCESS_RADIUS)
    assert info["success"].all(), "the PD base must solve the nominal arm"
    env = make_reacher()
    env.reset(seed=0)
    assert fingertip_distance(env) > 0.0


def test_reacher_dense_reward_is_the_outcome_minus_the_fingertip_distance() -> None:
    """Training's default reward on reacher: -0.5 x distance (m) every step, +1 at a successful end."""
    from cadenza.tasks.real.reacher import DISTANCE_REWARD

    project = load_project(REACHER)
    base = load_base(base_source(project, real=True), project.root, 2)
    task = make_task(project, num_envs=4, level=0.0, real=True, seed=3, reward="dense")  # level 0: no obs noise
    obs, _ = task.reset(seed=3)
    total = np.zeros(4)
    for t in range(50):
        obs, r, _term, _trunc, info = task.step(base(obs))
        if t < 49:
            dist = np.array([fingertip_distance(e) for e in task.envs])
        else:  # the envs have been reset: the last distance is in the final observation
            dist = np.hypot(info["final_obs"][:, 8], info["final_obs"][:, 9])
        np.testing.assert_allclose(r, info["success"] - DISTANCE_REWARD * dist, rtol=1e-5, atol=1e-6)
        total += r
    np.testing.assert_allclose(info["episode"]["r"], total, rtol=1e-5)
    # the shaping over an episode is the size of the +1 outcome, not several times it
    shaping = total - info["success"]
    assert np.all((shaping > -1.5) & (shaping < -0.2)), shaping


def test_the_reacher_base_fails_often_at_full_level_and_an_oracle_residual_fixes_it() -> None:
    """The calibration's shape on a small sample: level 1 hurts the base; undoing the bias within alpha helps."""
    from cadenza.residual.control_law import control_law
    from cadenza.tasks.real.perturb import BiasTorque

    project = load_project(REACHER)
    alpha = project.config.residual.alpha

    def success(oracle: bool) -> float:
        task = make_task(project, num_envs=48, level=1.0, real=True, seed=9)
        base = load_base(base_source(project, real=True), project.root, 2)
        obs, _ = task.reset(seed=9)
        for _ in range(50):
            a = base(obs)
            if oracle:
                bias = np.stack([next(p for p in task.perturbations(i) if isinstance(p, BiasTorque)).force
                                 for i in range(48)])
                a = control_law(a, -bias / 200.0 / alpha, alpha=alpha).action
            obs, _, _, _, info = task.step(a)
        return float(info["success"].mean())

    base_rate, oracle_rate = success(False), success(True)
    assert 0.3 <= base_rate <= 0.9
    assert oracle_rate >= base_rate + 0.2


def test_rescue_dog_spec_fall_and_goal() -> None:
    task = RealTask(dog.make_env, name="rescue-dog", num_envs=2, level=0.0, perturbations=dog.PERTURBATIONS)
    assert task.spec.label == "mujoco:rescue-dog"
    assert (task.spec.obs_dim, task.spec.act_dim, task.spec.horizon) == (dog.OBS_DIM, 8, dog.HORIZON)
    task.reset(seed=0)
    flipped, at_goal = task.envs[0].unwrapped, task.envs[1].unwrapped
    flipped.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # upside down
    at_goal.goal = at_goal.data.qpos[:2].copy()
    _obs, r, term, _trunc, info = task.step(np.zeros((2, 8)))
    assert list(term) == [True, True]
    assert list(info["collision"]) == [True, False]
    assert list(info["success"]) == [False, True]
    assert list(r) == [-1.0, 1.0]


def test_rescue_dog_dense_reward_is_the_progress_toward_the_goal() -> None:
    """Training's default reward on the dog: 0.5 per metre of progress each step, +1/-1 at the end."""
    base = load_base("builtin:rescue-dog-gait", act_dim=8)
    task = RealTask(dog.make_env, name="rescue-dog", num_envs=2, level=0.0, reward="dense",
                    perturbations=dog.PERTURBATIONS)
    obs, _ = task.reset(seed=2)
    before = np.array([e.unwrapped.goal_distance() for e in task.envs])
    start = before.copy()
    for _ in range(60):  # 1.2 s: half-way at most, no episode ends
        obs, r, term, trunc, _info = task.step(base(obs))
        assert not (term | trunc).any()
        after = np.array([e.unwrapped.goal_distance() for e in task.envs])
        np.testing.assert_allclose(r, dog.PROGRESS_REWARD * (before - after), rtol=1e-5, atol=1e-7)
        before = after
    assert np.all(start - before > 0.2), "the base walks toward its goal"


@pytest.mark.parametrize("spec", [
    PerturbationSpec(kind="mass", target="torso", scale=2.0),
    PerturbationSpec(kind="friction", scale=0.6),
    PerturbationSpec(kind="actuator_gain", target="hip_1,ankle_1,hip_2,ankle_2", scale=0.5),
    PerturbationSpec(kind="push", target="torso", scale=4.0),
], ids=lambda s: s.kind)
def test_each_rescue_dog_perturbation_moves_the_torso(spec: PerturbationSpec) -> None:
    actions = open_loop(100, 2, 8)

    def torso_path(level: float) -> np.ndarray:
        task = RealTask(dog.make_env, name="rescue-dog", num_envs=2, level=level, perturbations=[spec])
        task.reset(seed=4)
        out = []
        for a in actions:
            task.step(a)
            out.append([e.unwrapped.data.qpos[:3].copy() for e in task.envs])
        return np.array(out)

    gap_mm = 1000.0 * np.abs(torso_path(1.0) - torso_path(0.0)).max()
    assert gap_mm > 5.0, f"{spec.kind} moved the torso by only {gap_mm:.3f} mm"


@pytest.mark.slow
def test_the_gait_base_walks_the_nominal_dog_to_its_goal() -> None:
    base = load_base("builtin:rescue-dog-gait", act_dim=8)
    task = RealTask(dog.make_env, name="rescue-dog", num_envs=6, level=0.0, perturbations=dog.PERTURBATIONS)
    obs, _ = task.reset(seed=1)
    outcome = np.zeros(6, dtype=int)  # 0 running, 1 success, 2 failure
    for _ in range(dog.HORIZON):
        obs, _, term, trunc, info = task.step(base(obs))
        done = (term | trunc) & (outcome == 0)
        outcome[done] = np.where(info["success"][done], 1, 2)
    assert (outcome == 1).sum() >= 5
