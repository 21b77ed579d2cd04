"""The defects of issue [hostile-inputs], one test each: every one ran (exit 0, a file written, a version
registered, or a traceback) before the flag and config checks, and is refused up front now."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadenza.governance.registry import Registry
from cadenza.project.config import ConfigError, parse_config
from tests.conftest import make_project, run_cli


def one_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err and lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "dog", **{"task.num_envs": "16", "residual.hidden_dim": "32",
                                             "governance.eval_episodes": "20", "governance.min_episodes": "10"})


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--hidden-dim", "0", "expected an integer >= 4 and <= 8,192, got 0"),
    ("--rate-limit", "nan", "expected a finite number > 0 and <= 2, got nan"),
    ("--rate-limit", "inf", "got inf"),
    ("--alpha", "-0.0", "expected a finite number > 0 and <= 1"),
])
def test_residual_init_refuses_meaningless_numbers(project: Path, flag: str, value: str, expected: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "residual", "init", project, flag, value], capsys, monkeypatch)
    assert code == 2 and out == ""
    one_line(err, f"error: {flag}: ", expected)
    assert not (project / "residual").exists()


@pytest.mark.parametrize("steps", ["0", "-5", "999"])
def test_train_refuses_a_budget_that_trains_nothing(project: Path, steps: str, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "residual", "train", project, "--steps", steps], capsys, monkeypatch)
    assert code == 2 and out == ""
    one_line(err, "error: --steps: ", "expected an integer >= 1,000")
    assert Registry(project).versions("residual") == []
    assert not (project / ".cadenza").exists() and not (project / "residual").exists()


def test_train_refuses_a_budget_below_one_round(project: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """16 envs x 256 steps = 4,096 env steps a round: 2,000 would still register a version."""
    code, _, err = run_cli(["env", "residual", "train", project, "--steps", "2000"], capsys, monkeypatch)
    assert code == 2
    one_line(err, "--steps: 2,000 is less than one training round (4,096 env steps for task.num_envs = 16)")
    assert Registry(project).versions("residual") == []


def test_the_round_size_in_the_refusal_is_the_planned_learners(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``algorithm = "sac"`` a round is 16 envs (at most) x 64 steps = 1,024 env steps, not PPO's 8,192."""
    project = make_project(tmp_path / "dog", **{"residual.algorithm": '"sac"'})
    code, _, err = run_cli(["env", "residual", "train", project, "--steps", "1000"], capsys, monkeypatch)
    assert code == 2
    one_line(err, "--steps: 1,000 is less than one training round (1,024 env steps for task.num_envs = 64)")
    assert Registry(project).versions("residual") == []


@pytest.mark.parametrize("seed", ["-1", "1000000", "1000003", "nan"])
def test_train_seed_must_stay_below_the_heldout_seeds(project: Path, seed: str, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "residual", "train", project, "--seed", seed], capsys, monkeypatch)
    assert code == 2 and out == ""
    one_line(err, "error: --seed: ")
    assert Registry(project).versions("residual") == []


def test_residual_init_checks_the_onnx_base_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "dog", **{"base.source": '"nope/base.onnx"'})
    code, out, err = run_cli(["env", "residual", "init", project], capsys, monkeypatch)
    assert code == 2 and out == ""
    one_line(err, "key 'base.source'", "nope/base.onnx", "no such file")
    assert not (project / "residual").exists()


@pytest.mark.parametrize("goal", ["", "   ", "g" * 2001])
def test_run_refuses_an_empty_goal(project: Path, goal: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "run", project, "--headless", "--goal", goal], capsys, monkeypatch)
    assert code == 2 and out == ""
    one_line(err, "error: --goal: ")
    assert not (project / ".cadenza-env").exists()


@pytest.mark.parametrize(("args", "flag"), [
    (["--hidden-dim", "abc"], "--hidden-dim"),  # a bad type
    (["--alpha"], "--alpha"),  # no value
    (["--bogus"], "--bogus"),  # no such option
    (["--device", "tpu"], "--device"),  # not a choice
])
def test_usage_errors_are_one_line(project: Path, args: list[str], flag: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Click's usage box (Usage: ... / Try ... / Error: ...) is one line: `error: --flag: message`."""
    code, out, err = run_cli(["env", "residual", "init", project, *args], capsys, monkeypatch)
    assert code == 2 and out == ""
    line = one_line(err, f"error: {flag}: ")
    assert "Usage:" not in err and "Try " not in line


def test_missing_argument_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "train"], capsys, monkeypatch)
    assert code == 2
    one_line(err, "error: PROJECT: missing argument")


@pytest.mark.parametrize(("body", "key"), [
    ("[governance]\nlatency_budget_ms = inf", "governance.latency_budget_ms"),
    ("[bench]\ncost_per_gpu_hour = nan", "bench.cost_per_gpu_hour"),
    ("[bench]\ncost_per_cpu_core_hour = -inf", "bench.cost_per_cpu_core_hour"),
    ("[residual]\nseed = -1", "residual.seed"),
    ("[residual]\nseed = 1000000", "residual.seed"),
    ("[residual]\nalpha = true", "residual.alpha"),  # pydantic alone reads true as 1.0
    ('[residual]\nhidden_dim = "64"', "residual.hidden_dim"),  # ... and "64" as 64
    ("[residual]\ngate = 1", "residual.gate"),
    ("[residual]\nsteps = 9223372036854775807", "residual.steps"),
    ('[task.real]\nenv_kwargs = { x = nan }', "task.real.env_kwargs"),
    ('[mission]\ngoals = [""]', "mission.goals"),
])
def test_config_refuses_nan_inf_and_seed_out_of_range(body: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}"):
        parse_config(Path("cadenza.toml"), f'[project]\nname = "p"\n\n{body}\n'.encode())


def test_entry_point_module_must_exist_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "dog", **{"base.source": '"my_robot:make_base"'})
    (project / "my_robot.py").write_text("def make_other():\n    raise SystemExit('never imported')\n")
    code, _, err = run_cli(["env", "residual", "init", project], capsys, monkeypatch)
    assert code == 2
    one_line(err, "key 'base.source'", "defines no 'make_base'")
    (project / "my_robot.py").write_text("from math import *\n")  # cannot tell statically: the import decides
    project.joinpath("cadenza.toml").write_text(project.joinpath("cadenza.toml").read_text()
                                                .replace("my_robot:make_base", "robots.dog:make_base"))
    code, _, err = run_cli(["env", "residual", "init", project], capsys, monkeypatch)
    assert code == 2
    one_line(err, "key 'base.source'", "cannot find module 'robots'")


def test_auto_refuses_a_budget_under_the_larger_round_and_sharding(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``algorithm = "auto"`` may run either learner: a budget under PPO's round (the larger) is refused with it,
    and ``--rollout-workers`` > 1 is refused in one line (SAC collects in one piece)."""
    project = make_project(tmp_path / "dog", **{"residual.algorithm": '"auto"'})
    code, _, err = run_cli(["env", "residual", "train", project, "--steps", "2000"], capsys, monkeypatch)
    assert code == 2
    one_line(err, "--steps: 2,000 is less than one training round (8,192 env steps for task.num_envs = 64)")
    code, _, err = run_cli(["env", "residual", "train", project, "--rollout-workers", "2"], capsys, monkeypatch)
    assert code == 2
    one_line(err, "--rollout-workers 2: sharded rollouts are built for PPO, and algorithm 'auto' may pick SAC")
    assert Registry(project).versions("residual") == []
