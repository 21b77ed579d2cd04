"""cadenza.toml errors and ``cadenza init``, through the real command line.

Most cases call the console-script entry point ``cadenza.cli.main:main`` in-process (the same function
the installed ``cadenza`` script runs, including its error handling); one case runs the installed
script in a subprocess to check what a user's terminal really shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cadenza.project.config import (
    CONFIG_NAME,
    PROMPT_NAME,
    BenchSection,
    DistillSection,
    GovernanceSection,
    ResidualSection,
    load_project,
)
from tests.conftest import run_cli

EXIT_USAGE = 2




def assert_one_line_error(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    line = lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def cadenza_command() -> list[str]:
    script = Path(sys.executable).with_name("cadenza")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cadenza.cli.main"]


# --------------------------------------------------------------------------------------------- bad files

BAD_CONFIGS = {
    # id: (cadenza.toml text, pieces the one-line error must contain)
    "toml-syntax": ('[project]\nname = "x"\n[residual\nalpha = 0.1\n', ["TOML syntax error", "line 3"]),
    "unknown-key": ('[project]\nname = "x"\n[residual]\nalfa = 0.1\n', ["unknown key", "residual.alfa"]),
    "unknown-section": ('[project]\nname = "x"\n[residul]\nalpha = 0.1\n', ["unknown key", "residul"]),
    "wrong-type-int": (
        '[project]\nname = "x"\n[residual]\nhidden_dim = "big"\n',
        ["residual.hidden_dim", "integer", "'big'"],
    ),
    "wrong-type-bool": ('[project]\nname = "x"\n[residual]\ngate = "maybe"\n', ["residual.gate", "boolean"]),
    "wrong-type-table": ('project = "x"\n', ["'project'", "dictionary"]),
    "out-of-range-alpha": (
        '[project]\nname = "x"\n[residual]\nalpha = 1.5\n',
        ["residual.alpha", "less than or equal to 1", "1.5"],
    ),
    "out-of-range-level": (
        '[project]\nname = "x"\n[task]\nlevel = -0.2\n',
        ["task.level", "greater than or equal to 0"],
    ),
    "out-of-range-num-envs": ('[project]\nname = "x"\n[task]\nnum_envs = 0\n', ["task.num_envs"]),
    "out-of-range-confidence": (
        '[project]\nname = "x"\n[governance]\nconfidence = 1.0\n',
        ["governance.confidence", "less than 1"],
    ),
    "missing-project": ("[residual]\nalpha = 0.1\n", ["[project]"]),
    "missing-project-name": ('[project]\ndescription = "no name"\n', ["missing required key", "project.name"]),
    "bad-project-name": ('[project]\nname = "has space"\n', ["project.name", "pattern"]),
    "bad-base-source": ('[project]\nname = "x"\n[base]\nsource = "nonsense"\n', ["base.source", "builtin:", ".onnx"]),
    "unknown-proxy-task": ('[project]\nname = "x"\n[task]\nid = "proxy:cartpole"\n', ["task.id", "proxy:rescue-dog"]),
    "inverted-param-range": (
        '[project]\nname = "x"\n[mission.actions.walk]\nparams = { distance_m = [3.0, 0.1] }\n',
        ["mission.actions.walk.params", "distance_m"],
    ),
    "duplicate-goals": ('[project]\nname = "x"\n[mission]\ngoals = ["a", "a"]\n', ["mission.goals", "duplicates"]),
    "unknown-perturbation": (
        '[project]\nname = "x"\n[[task.real.perturbations]]\nkind = "gravity"\n',
        ["task.real.perturbations.0.kind", "'gravity'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text, needles = BAD_CONFIGS[case]
    cfg = tmp_path / CONFIG_NAME
    cfg.write_text(text)
    code, out, err = run_cli(["env", "residual", "init", tmp_path], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(cfg), *needles)
    assert out == ""
    assert not (tmp_path / "residual").exists(), "nothing may be written when the config is bad"


def test_non_utf8_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / CONFIG_NAME
    cfg.write_bytes(b'[project]\nname = "\xff"\n')
    code, _, err = run_cli(["env", "residual", "init", tmp_path], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(cfg), "UTF-8")


def test_missing_project_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    code, _, err = run_cli(["env", "residual", "init", missing], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(missing), "no such project directory", "cadenza init")
    assert not missing.exists()


def test_project_path_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    code, _, err = run_cli(["env", "residual", "init", a_file], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(a_file), "not a directory")


def test_missing_cadenza_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", tmp_path], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(tmp_path / CONFIG_NAME), "missing", "cadenza init")


def test_installed_script_reports_config_error_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / CONFIG_NAME
    cfg.write_text('[project]\nname = "x"\n[governance]\nmin_episodes = "many"\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "60"}
    proc = subprocess.run([*cadenza_command(), "env", "residual", "init", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == EXIT_USAGE
    # one line even though it is longer than the 60-column terminal
    line = assert_one_line_error(proc.stderr, str(cfg), "governance.min_episodes", "'many'")
    assert len(line) > 60
    assert proc.stdout == ""


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", ".", "--alpha", "lots"], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert "--alpha" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------- cadenza init

def test_init_writes_a_project_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "my-dog"
    code, out, err = run_cli(["init", proj], capsys, monkeypatch)
    assert code == 0, err
    assert (proj / CONFIG_NAME).is_file()
    assert (proj / PROMPT_NAME).read_text().strip()
    assert str(proj / CONFIG_NAME) in out.replace("\n", "")  # rich may wrap a long path
    text = (proj / CONFIG_NAME).read_text()
    assert "{name}" not in text
    loaded = load_project(proj)
    assert loaded.name == "my-dog"
    assert loaded.config.task.id == "proxy:rescue-dog"
    assert loaded.config.base.source == "builtin:rescue-dog"
    assert loaded.config.mission.goals, "the template carries mission goals"
    assert "{goal}" in loaded.config.vla_finetune.prompt_template
    # the template spells out the schema defaults, so docs/config.md and a fresh project agree
    assert loaded.config.residual == ResidualSection()
    assert loaded.config.governance == GovernanceSection()
    assert loaded.config.distill == DistillSection()
    assert loaded.config.bench == BenchSection()
    assert sorted(p.name for p in proj.iterdir()) == sorted([CONFIG_NAME, PROMPT_NAME]), "no temporary files left"


def test_init_name_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["init", tmp_path / "dir", "--name", "rover_2"], capsys, monkeypatch)
    assert code == 0, err
    assert load_project(tmp_path / "dir").name == "rover_2"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "p"
    assert run_cli(["init", proj], capsys, monkeypatch)[0] == 0
    cfg, prompt = proj / CONFIG_NAME, proj / PROMPT_NAME
    cfg.write_text(cfg.read_text().replace("alpha = 0.15", "alpha = 0.2"))
    prompt.write_text("my own prompt\n")
    before = cfg.read_bytes()

    code, _, err = run_cli(["init", proj], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, str(cfg), "already exists", "--force")
    assert cfg.read_bytes() == before
    assert prompt.read_text() == "my own prompt\n"

    code, _, err = run_cli(["init", proj, "--force"], capsys, monkeypatch)
    assert code == 0, err
    assert load_project(proj).config.residual.alpha == 0.15
    assert prompt.read_text() != "my own prompt\n"


def test_init_keeps_an_existing_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path.joinpath(PROMPT_NAME).write_text("hand-written prompt\n")
    code, _, err = run_cli(["init", tmp_path, "--name", "p"], capsys, monkeypatch)
    assert code == 0, err
    assert tmp_path.joinpath(PROMPT_NAME).read_text() == "hand-written prompt\n"
    assert load_project(tmp_path).name == "p"


def test_init_unknown_template(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "p"
    code, _, err = run_cli(["init", proj, "--template", "cartpole"], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, "--template", "'cartpole'", "rescue-dog")
    assert not proj.exists()


def test_init_invalid_name_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "p"
    code, _, err = run_cli(["init", proj, "--name", "bad name!"], capsys, monkeypatch)
    assert code == EXIT_USAGE
    assert_one_line_error(err, "project.name", "bad name!")
    assert not proj.exists()
