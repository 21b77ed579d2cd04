"""Mission episodes as a training task (``[task] episodes = "mission"``): real missions, batched."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.governance.registry import Registry
from cadenza.mission.controller import MISSION_LABEL, load_controller
from cadenza.mission.task import TRACK_REWARD, RescueDogMissionTask
from cadenza.project.config import ConfigError, load_project
from cadenza.residual.evaluate import evaluate
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import save_policy
from cadenza.tasks.factory import make_task
from tests.conftest import make_project, run_cli


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    return load_project(make_project(tmp_path_factory.mktemp("mtask") / "dog", **{"task.episodes": '"mission"'}))


def _rollout(task, ticks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    base = RescueDogBase()
    obs, _ = task.reset(seed=seed)
    seen, rewards = [obs.copy()], []
    for _ in range(ticks):
        obs, r, _, _, _ = task.step(base(obs))
        seen.append(obs.copy())
        rewards.append(r.copy())
    return np.stack(seen), np.stack(rewards)


def test_the_config_key_builds_the_mission_task(project) -> None:
    task = make_task(project, num_envs=4, level=1.0, reward="dense")
    assert isinstance(task, RescueDogMissionTask)
    assert task.spec.label == MISSION_LABEL and task.spec.obs_dim == 18 and task.spec.act_dim == 3
    assert task.reference is not None  # the dense reward compares with the nominal robot under the base


def test_mission_episodes_refuse_the_stop_arrival(tmp_path) -> None:
    root = make_project(tmp_path / "dog", **{"task.episodes": '"mission"', "task.arrival": '"stop"'})
    with pytest.raises(ConfigError, match="leave arrival at 'reach'"):
        load_project(root)


def test_same_seed_and_commands_give_the_same_missions(project) -> None:
    a = _rollout(make_task(project, num_envs=3, level=1.0, reward="dense"), 300, seed=11)
    b = _rollout(make_task(project, num_envs=3, level=1.0, reward="dense"), 300, seed=11)
    c = _rollout(make_task(project, num_envs=3, level=1.0, reward="dense"), 300, seed=12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_the_tracking_reward_is_full_on_the_nominal_robot_and_lower_off_it(project) -> None:
    """At level 0 the robot is the nominal one: the base's command gives exactly the nominal response.
    At level 1 it does not, and a command that undoes the perturbation (within the residual's bound)
    tracks better than the base's own."""
    _, r0 = _rollout(make_task(project, num_envs=8, level=0.0, reward="dense"), 400, seed=3)
    outcome = np.abs(r0) >= 0.5  # +1 / -1 ticks, if any mission ended
    assert np.abs(r0[~outcome] - TRACK_REWARD).max() < 1e-7  # perfect tracking earns the full reward
    _, r1 = _rollout(make_task(project, num_envs=8, level=1.0, reward="dense"), 400, seed=3)
    track = r1[np.abs(r1) < 0.5]
    assert track.min() > 0.0 and track.mean() < 0.6 * TRACK_REWARD  # positive, and well below perfect


def test_missions_succeed_at_level_0_and_less_at_level_1(project) -> None:
    base = RescueDogBase()
    stats = {lv: evaluate(lambda n, lv=lv: make_task(project, num_envs=n, level=lv), base, None,
                          episodes=48, seed=0, chunk=48) for lv in (0.0, 1.0)}
    assert stats[0.0].success_rate >= 0.9
    assert stats[1.0].success_rate <= stats[0.0].success_rate - 0.15
    assert stats[1.0].collisions > stats[0.0].collisions  # missions at level 1 fail by collisions
    assert stats[1.0].task == MISSION_LABEL


def _promote_residual(project, task_label: str) -> str:
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16, gate=True, alpha=0.15, rate_limit=0.5)
    path = project.root / "candidate.pt"
    meta = {"task": task_label, "env_steps": 0, "seed": 0}
    save_policy(ResidualActor(arch), path, meta)
    reg = Registry(project.root)
    version = reg.register("residual", {"policy.pt": path}, meta)
    reg.promote("residual", version)
    return version


def test_a_residual_trained_on_missions_acts_in_every_phase(tmp_path) -> None:
    project = load_project(make_project(tmp_path / "dog"))
    _promote_residual(project, "proxy")
    ctl = load_controller(project)
    assert ctl.kind == "residual" and not ctl.everywhere
    assert ctl.describe()["residual_phases"] == "travel"
    version = _promote_residual(project, MISSION_LABEL)
    ctl = load_controller(project)
    assert ctl.everywhere and ctl.version == version
    assert ctl.describe()["residual_trained_on"] == MISSION_LABEL
    obs = make_task(project, num_envs=1, level=1.0).reset(seed=0)[0]
    with torch.no_grad():  # make the residual push, so its correction is visible
        ctl.residual.actor.net[-1].bias.fill_(5.0)
    a_base = ctl.base(obs)
    assert not np.allclose(ctl.act(obs, 0.0), a_base)  # the skill's weight 0 no longer turns it off


@pytest.mark.slow
def test_train_on_mission_episodes_end_to_end(tmp_path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`env residual train` on mission episodes: trains, scores on missions, records the task label that
    `env run` reads, and `env run` then applies the candidate in every phase once it is the baseline."""
    root = make_project(tmp_path / "dog", **{
        "task.episodes": '"mission"', "task.num_envs": "16", "residual.hidden_dim": "32",
        "governance.eval_episodes": "24", "governance.min_episodes": "12", "governance.max_eval_episodes": "72",
        "governance.validation_episodes": "24"})
    code, out, err = run_cli(["env", "residual", "train", root, "--steps", "4096"], capsys, monkeypatch)
    assert code in (0, 3, 4), err
    assert re.search(r"scorecard \[proxy:missions\], (24|48|72) episodes per policy \([\d,]+ env steps in all\), "
                     r"held-out block 0",
                     " ".join(out.split()))
    reg = Registry(root)
    version = reg.latest("residual")
    assert reg.manifest("residual", version)["metadata"]["task"] == MISSION_LABEL
    reg.promote("residual", version)
    code, out, err = run_cli(["env", "run", root, "--headless", "--episodes", "1", "--perturb", "1.0"],
                             capsys, monkeypatch)
    assert code == 0 and "not trained on missions" not in err
    log = sorted((root / ".cadenza-env").glob("*.log.jsonl"))[-1]
    header = json.loads(log.read_text().splitlines()[0])
    assert header["controller"]["residual_phases"] == "all"
    assert header["controller"]["residual_trained_on"] == MISSION_LABEL
