"""``cadenza env residual init``: the residual head is built and dry-run profiled, nothing is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

OBS_DIM, ACT_DIM = 18, 3  # the rescue-dog proxy




def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def expected_params(hidden: int, gate: bool, layers: int = 2) -> int:
    """Actor parameters: MLP on [obs, a_base] -> delta (+ gate), plus one log-std per output."""
    inp, out = OBS_DIM + ACT_DIM, ACT_DIM + (1 if gate else 0)
    n = inp * hidden + hidden
    n += (layers - 1) * (hidden * hidden + hidden)
    n += hidden * out + out
    return n + out


@pytest.fixture()
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "p"
    code, _, err = run_cli(["init", root], capsys, monkeypatch)
    assert code == 0, err
    return root


def test_init_then_residual_init_writes_the_spec(project: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "residual", "init", project, "--alpha", "0.15"], capsys, monkeypatch)
    assert code == 0, err
    path = project / "residual" / "residual.json"
    assert str(path) in out.replace("\n", "")  # rich may wrap a long path
    assert "parameters" in out and "latency" in out
    spec = json.loads(path.read_text())
    assert spec["task"] == "proxy"
    assert spec["base"] == "builtin:rescue-dog"
    assert spec["device"] == "cpu"
    arch = spec["architecture"]
    assert (arch["obs_dim"], arch["act_dim"], arch["hidden_dim"]) == (OBS_DIM, ACT_DIM, 256)
    assert arch["alpha"] == 0.15 and arch["rate_limit"] == 0.5 and arch["gate"] is True
    prof = spec["profile"]
    assert prof["params"] == expected_params(256, gate=True)
    assert 0.0 < prof["latency_p50_us"] <= prof["latency_p99_us"]
    assert prof["latency_p50_us"] < 1e6, "one observation takes well under a second"
    assert prof["throughput_obs_per_s"] > 0.0
    assert prof["peak_memory_bytes"] >= prof["model_bytes"] > 0
    assert prof["model_bytes"] >= 4 * prof["params"]
    assert spec["versions"]["torch"] == torch.__version__
    assert sorted(p.name for p in path.parent.iterdir()) == ["residual.json"], "no temporary files left"


def test_printed_table_names_the_task_label(project: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "residual", "init", project, "--hidden-dim", "8"], capsys, monkeypatch)
    assert code == 0, err
    assert "proxy" in out, "every printed number says which task it comes from"


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["env", "residual", "init", "--help"], capsys, monkeypatch)
    assert code == 0
    for flag, default in (("--hidden-dim", "256"), ("--alpha", "0.15"), ("--rate-limit", "0.5")):
        line = next(ln for ln in out.splitlines() if flag in ln)
        assert f"default: {default}" in line, line


def test_flags_override_the_config(project: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", project, "--hidden-dim", "32", "--alpha", "0.3",
                            "--rate-limit", "0.2", "--obs-dim", str(OBS_DIM), "--device", "cpu"], capsys, monkeypatch)
    assert code == 0, err
    spec = json.loads((project / "residual" / "residual.json").read_text())
    arch = spec["architecture"]
    assert (arch["hidden_dim"], arch["alpha"], arch["rate_limit"]) == (32, 0.3, 0.2)
    assert spec["profile"]["params"] == expected_params(32, gate=True)


def test_no_gate_changes_the_architecture(project: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = project / "residual" / "residual.json"
    assert run_cli(["env", "residual", "init", project, "--hidden-dim", "32"], capsys, monkeypatch)[0] == 0
    gated = json.loads(path.read_text())
    code, out, err = run_cli(["env", "residual", "init", project, "--hidden-dim", "32", "--no-gate"], capsys,
                             monkeypatch)
    assert code == 0, err
    plain = json.loads(path.read_text())
    assert gated["architecture"]["gate"] is True and plain["architecture"]["gate"] is False
    assert plain["profile"]["params"] == expected_params(32, gate=False)
    # one output row, its bias, its log std
    assert gated["profile"]["params"] - plain["profile"]["params"] == 32 + 1 + 1
    assert "gate" not in plain["control_law"]
    assert "no gate" in out


def test_config_gate_false_is_honoured(project: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = project / "cadenza.toml"
    cfg.write_text(cfg.read_text().replace("gate = true", "gate = false")
                   .replace("hidden_dim = 256", "hidden_dim = 16"))
    assert run_cli(["env", "residual", "init", project], capsys, monkeypatch)[0] == 0
    arch = json.loads((project / "residual" / "residual.json").read_text())["architecture"]
    assert arch["gate"] is False and arch["hidden_dim"] == 16


def test_mismatching_obs_dim_is_a_clear_error(project: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", project, "--obs-dim", "17"], capsys, monkeypatch)
    assert code != 0
    line = one_error_line(err)
    assert "--obs-dim 17" in line and str(OBS_DIM) in line
    assert not (project / "residual" / "residual.json").exists()


def test_cuda_on_a_cpu_machine_is_a_clear_error(project: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(["env", "residual", "init", project, "--device", "cuda"], capsys, monkeypatch)
    assert code != 0
    line = one_error_line(err)
    assert "--device cuda" in line and "CUDA" in line
    assert not (project / "residual" / "residual.json").exists()


def test_unknown_device_is_a_clear_error(project: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", project, "--device", "tpu"], capsys, monkeypatch)
    assert code != 0
    line = one_error_line(err)
    assert "--device" in line and "'tpu'" in line


@pytest.mark.parametrize(("flag", "value"), [("--alpha", "0"), ("--alpha", "1.5"), ("--rate-limit", "0"),
                                             ("--hidden-dim", "2")])
def test_out_of_range_flags(project: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["env", "residual", "init", project, flag, value], capsys, monkeypatch)
    assert code != 0
    assert flag in one_error_line(err)
    assert not (project / "residual" / "residual.json").exists()
