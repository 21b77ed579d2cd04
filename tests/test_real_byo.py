"""Bring your own task and base: the BYO example, entry-point errors, config errors, missing MuJoCo."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cadenza.base.loader import BasePolicyError, load_base
from cadenza.project.config import ConfigError, load_project
from cadenza.tasks.factory import base_source, make_task

ROOT = Path(__file__).resolve().parent.parent
BYO = ROOT / "examples" / "byo-pendulum"


def write_project(root: Path, real_table: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cadenza.toml").write_text(f'[project]\nname = "{root.name}"\n\n[task.real]\n{textwrap.dedent(real_table)}')
    for name, text in (files or {}).items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_byo_example_loads_and_steps_through_the_seam() -> None:
    project = load_project(BYO)
    task = make_task(project, num_envs=4, level=0.0, real=True, seed=0)
    assert task.spec.label == "mujoco:byo-pendulum"
    assert (task.spec.obs_dim, task.spec.act_dim, task.spec.horizon) == (3, 1, 100)
    base = load_base(base_source(project, real=True), project.root, task.spec.act_dim)
    assert base.source == "my_robot:UprightPD"
    obs, _ = task.reset(seed=0)
    for _ in range(task.spec.horizon):
        obs, _r, _term, trunc, info = task.step(base(obs))
    # the user's own success function decided this: the nominal pendulum stands up
    assert trunc.all() and info["success"].all() and not info["collision"].any()
    task.close()


def test_byo_perturbations_reach_the_users_own_model() -> None:
    project = load_project(BYO)
    task = make_task(project, num_envs=1, level=1.0, real=True, seed=0)
    task.reset(seed=0)
    model = task.envs[0].unwrapped.model
    assert model.body("pole").mass[0] > 1.01 * 1.25  # bob + rod, heavier by the drawn share
    assert model.actuator_gear[0, 0] < 8.0
    kinds = [p.spec.kind for p in task.perturbations(0)]
    assert kinds == ["mass", "actuator_gain", "bias_torque", "latency", "obs_noise"]


def test_user_collision_function_and_sparse_reward(tmp_path: Path) -> None:
    """Push the pendulum over with a huge bias: the user's ``fell`` reports it, reward -1."""
    src = (BYO / "my_robot.py").read_text()
    root = write_project(tmp_path / "tipover", """\
        task = "my_robot:make_env"
        success = "my_robot:upright"
        collision = "my_robot:fell"
        env_kwargs = { max_episode_steps = 60 }
        [[task.real.perturbations]]
        kind = "bias_torque"
        target = "hinge"
        scale = 40.0
        """, {"my_robot.py": src})
    task = make_task(load_project(root), num_envs=2, level=1.0, real=True, seed=1)
    task.reset(seed=1)
    fell = np.zeros(2, dtype=bool)
    for _ in range(60):
        _, r, term, _, info = task.step(np.zeros((2, 1)))
        fell |= info["collision"]
        assert np.all(r[info["collision"]] == -1.0) and np.all(term[info["collision"]])
    assert fell.all()


@pytest.mark.parametrize(("body", "message"), [
    ("def explode(obs):\n    raise RuntimeError('motor driver offline')\n",
     "raised RuntimeError: motor driver offline"),
    ("import numpy as np\ndef explode(obs):\n    return np.zeros((obs.shape[0], 3))\n", "returned shape (4, 3), "
            "expected (4, 1)"),
    ("import numpy as np\ndef explode(obs):\n    return np.full((obs.shape[0], 1), np.nan)\n", "non-finite"),
])
def test_a_misbehaving_base_entry_point_names_itself(tmp_path: Path, body: str, message: str) -> None:
    root = write_project(tmp_path / "bad", 'task = "Pendulum-v1"\nbase = "bad_base:explode"\n', {"bad_base.py": body})
    sys.modules.pop("bad_base", None)
    project = load_project(root)
    task = make_task(project, num_envs=4, level=0.0, real=True)
    base = load_base(base_source(project, real=True), project.root, task.spec.act_dim)
    obs, _ = task.reset(seed=0)
    with pytest.raises(BasePolicyError) as err:
        base(obs)
    assert "'bad_base:explode'" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)
    sys.modules.pop("bad_base", None)


@pytest.mark.parametrize(("files", "spec", "message"), [
    ({}, "nowhere:policy", "cannot import 'nowhere'"),
    ({"half.py": "x = 1\n"}, "half:policy", "has no attribute 'policy'"),
    ({"ctor.py": "class Policy:\n    def __init__(self):\n        raise ValueError('no calibration file')\n"},
     "ctor:Policy", "constructing it raised ValueError: no calibration file"),
])
def test_a_base_entry_point_that_cannot_load_names_itself(tmp_path: Path, files: dict[str, str], spec: str,
                                                          message: str) -> None:
    root = write_project(tmp_path / "p", f'task = "Pendulum-v1"\nbase = "{spec}"\n', files)
    with pytest.raises(BasePolicyError, match=f"'{spec}'") as err:
        load_base(base_source(load_project(root), real=True), root, 1)
    assert message in str(err.value)


@pytest.mark.parametrize(("table", "files", "message"), [
    ('task = "builtin:walker"\n', {}, "key 'task.real.task': unknown built-in task 'builtin:walker'; available: "
                                      "builtin:reacher, builtin:rescue-dog"),
    ('task = ""\n', {}, "key 'task.real.task': required for --real"),
    ('task = "NoSuchEnv-v9"\n', {}, "key 'task.real.task': Gymnasium cannot make 'NoSuchEnv-v9'"),
    ('task = "builtin:reacher"\n[[task.real.perturbations]]\nkind = "damping"\ntarget = "elbow"\nscale = 1.0\n', {},
     "key 'task.real.perturbations[0].target': 'elbow' matches no hinge or slide joint; the model has: joint0, joint1, "
     "target_x, target_y"),
    ('task = "Pendulum-v1"\n[[task.real.perturbations]]\nkind = "mass"\nscale = 1.0\n', {},
     "key 'task.real.perturbations[0].kind': 'mass' changes MuJoCo model parameters, but this env exposes no MuJoCo "
     "model"),
    ('task = "Pendulum-v1"\nsuccess = "judge:missing"\n', {"judge.py": "x = 1\n"},
     "key 'task.real.success': 'judge:missing': 'judge' has no attribute 'missing'"),
    ('task = "envs:make"\n', {"envs.py": "import gymnasium as gym\ndef make():\n    return "
                                         "gym.make('Pendulum-v1').unwrapped\n"},
     "no time limit: set task.real.env_kwargs.max_episode_steps"),
    ('task = "envs2:make"\n', {"envs2.py": "def make():\n    raise OSError('robot.xml not found')\n"},
     "key 'task.real.task': env factory 'envs2:make' raised OSError: robot.xml not found"),
])
def test_bad_real_task_config_is_one_clear_line(tmp_path: Path, table: str, files: dict[str, str],
                                                message: str) -> None:
    root = write_project(tmp_path / "cfg", table, files)
    with pytest.raises(ConfigError) as err:
        make_task(load_project(root), num_envs=1, real=True)
    text = str(err.value)
    assert str(root / "cadenza.toml") in text and message in text and "\n" not in text


def test_missing_mujoco_says_install_the_sim_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mujoco", None)  # any `import mujoco` now fails
    with pytest.raises(ConfigError) as err:
        make_task(load_project(ROOT / "examples" / "reacher"), num_envs=1, real=True)
    text = str(err.value)
    assert "pip install -e '.[sim]'" in text and "\n" not in text


def test_builtin_real_bases_are_plain_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bases load (and run) without MuJoCo: only the tasks need the sim extra."""
    monkeypatch.setitem(sys.modules, "mujoco", None)
    for mod in ("cadenza.base.quadruped_gait", "cadenza.base.reacher_pd", "cadenza.tasks.real.quadruped_layout"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    for source, obs_dim, act_dim in (("builtin:reacher-pd", 10, 2), ("builtin:rescue-dog-gait", 31, 8)):
        obs = np.zeros((3, obs_dim), dtype=np.float32)
        obs[:, 0] = 1.0
        a = load_base(source, act_dim=act_dim)(obs)
        assert a.shape == (3, act_dim) and np.all(np.abs(a) <= 1.0)


SLOW_ROBOT = """\

import time


class Dear(gym.Wrapper):
    \"\"\"The pendulum at the price of a heavy simulator: every step costs 3 ms more.\"\"\"

    def step(self, action):
        time.sleep(0.003)
        return self.env.step(action)


def make_dear_env(**kwargs):
    return Dear(make_env(**kwargs))
"""


@pytest.mark.slow
def test_a_dear_task_of_your_own_gets_no_card_costing_more_than_its_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The BYO pendulum with 3 ms steps: train measures the step, finds that one card of 256 episodes (12,800 env
    steps) costs more than the 4,096-step budget, takes none, and the scorecard judges the last round."""
    import json

    from tests.conftest import run_cli

    src = (BYO / "my_robot.py").read_text() + SLOW_ROBOT  # a module of its own: my_robot is imported
    root = write_project(tmp_path / "dear-pendulum", """\
        task = "dear_robot:make_dear_env"
        base = "dear_robot:UprightPD"
        success = "dear_robot:upright"
        collision = "dear_robot:fell"
        env_kwargs = { max_episode_steps = 50 }
        [[task.real.perturbations]]
        kind = "mass"
        target = "pole"
        scale = 0.5
        """, {"dear_robot.py": src})
    with (root / "cadenza.toml").open("a") as f:
        f.write('\n[task]\nid = "dear_robot:make_dear_env"\nnum_envs = 8\n\n[base]\nsource = "dear_robot:UprightPD"\n\n'
                '[residual]\nhidden_dim = 16\n\n[governance]\neval_episodes = 16\nmin_episodes = 16\n'
                'max_eval_episodes = 16\n')
    code, out, err = run_cli(["env", "residual", "train", root, "--real", "--steps", "4096", "--seed", "0"],
                             capsys, monkeypatch)
    assert code in (0, 3, 4) and not err, err
    flat = " ".join(out.split())
    assert "no validation card: on this task one card of 256 episodes can take 12,800 env steps" in flat
    report = json.loads((root / "residual" / "train_report_real.json").read_text())
    assert report["task"] == "mujoco:dear-pendulum" and report["env_step_s"] >= 0.002
    assert report["plan"]["validate_from"] >= report["plan"]["budget_steps"] == 4096
    assert report["validation_env_steps"] == 0  # not a card, not even the base alone's run on the validation block
    assert not any("val_margin" in h for h in report["history"])
    assert report["best_round"] == report["history"][-1]["round"]  # the last round, as no card chose one
    assert report["scorecard"]["episodes"] == 16 and report["verdict"] in ("DEPLOY", "BLOCK", "NEEDS_DATA")
