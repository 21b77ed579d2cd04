"""``cadenza env distill`` and ``cadenza env distill eval`` end to end on tiny real projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza.distill.runtime import load_promoted_student
from cadenza.governance.registry import Registry
from cadenza.project.config import load_project
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import save_policy
from tests.conftest import make_project, run_cli

# governance loose enough that a tiny distillation is judged on its mechanics, not its quality
LOOSE = {"task.num_envs": "16", "task.level": "0.0", "distill.hidden_dim": "16", "distill.rollout_envs": "16",
         "governance.success_threshold": "0.0", "governance.max_collision_rate": "1.0",
         "governance.regression_margin": "1.0", "governance.max_student_gap": "1.0",
         "governance.min_episodes": "20", "governance.eval_episodes": "40", "governance.max_eval_episodes": "120"}
TINY = ["--epochs", "2", "--rounds", "2", "--episodes", "40"]


def _promote_fresh_residual(root: Path) -> str:
    """A freshly initialised residual (near zero: base + residual ~ base), registered and promoted."""
    policy = root / "fresh_residual.pt"
    save_policy(ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16)), policy, {"real": False})
    reg = Registry(root)
    version = reg.register("residual", {"policy.pt": policy}, {"task": "proxy", "real": False})
    reg.promote("residual", version, ["test fixture"])
    return version


@pytest.mark.slow
def test_distill_eval_promote_run_and_rollback(tmp_path: Path, capsys, monkeypatch) -> None:
    root = make_project(tmp_path / "dog", **LOOSE)
    rv = _promote_fresh_residual(root)

    code, out, err = run_cli(["env", "distill", root, *TINY, "--quantize"], capsys, monkeypatch)
    assert code == 0, err
    assert "student v0001" in out and f"base + residual {rv}" in out and "MEETS" in out
    report = json.loads((root / "student" / "distill_report.json").read_text())
    assert report["task"] == "proxy" and report["version"] == "v0001"
    assert len(report["dagger"]["rounds"]) == 2 and report["dagger"]["rounds"][1]["student_share"] > 0
    assert report["dagger"]["samples"] == 2 * 16 * 350
    assert report["parity_max_abs"]["candidate_heldout"]["fp32"] <= 1e-5
    assert 0 < report["int8_to_fp32_bytes"] < 1 and "device" in report["accel"]
    assert set(report["latency_us"]) == {"fp32", "int8", "numpy"}
    for name in ("student.onnx", "student.int8.onnx", "student.safetensors", "student.json"):
        assert (root / "student" / "candidate" / name).is_file()
    assert Registry(root).baseline("student") is None  # distill registers; only eval promotes

    code, out, _ = run_cli(["env", "distill", "eval", root, "--promote"], capsys, monkeypatch)
    assert code == 0 and "verdict: DEPLOY" in out and "promoted v0001" in out
    card = json.loads((root / "student" / "eval_report.json").read_text())["scorecard"]
    steps = sum(round(m["episodes"] * m["mean_length"]) for m in card["metrics"].values())
    n = len(card["metrics"]) * card["episodes"]  # every policy's episodes (teacher, student), 1-350 ticks each
    assert n <= steps <= 350 * n
    assert f"held-out episodes ({steps:,} env steps in all)" in " ".join(out.split())
    # distill's preview used block 0; the eval decided on fresh episodes of block 1, both in the ledger
    assert "held-out block 1" in out
    # a student's looks run up to its own cap (governance.max_student_eval_episodes), not train's
    assert "up to 10000" in out
    assert json.loads((root / "student" / "eval_report.json").read_text())["scorecard"]["plan"]["cap"] == 10_000
    # the int8-aware epochs ran (distill.quant_aware_epochs) and lowered the int8 mirror's held-out error
    q = report["quant_aware"]
    assert q["epochs"] == 10 and q["val_mse_after"]["int8"] < q["val_mse_before"]["int8"]
    assert Registry(root).blocks_used("student", "v0001") == [0, 1]
    events = [(e["event"], e.get("block")) for e in Registry(root).ledger("student") if e.get("version") == "v0001"]
    assert ("preview", 0) in events and ("verdict", 1) in events
    for name in ("student.onnx", "student.int8.onnx", "student.safetensors", "student.json"):
        assert (root / "student" / name).is_file()
    student = load_promoted_student(load_project(root))
    assert student is not None and student.version == "v0001"
    assert Registry(root).last_verdict("student", "v0001")["verdict"] == "DEPLOY"

    code, out, err = run_cli(["env", "run", root, "--headless", "--episodes", "1", "--controller", "student"],
                             capsys, monkeypatch)
    assert code == 0, err
    log = sorted((root / ".cadenza-env").glob("*.log.jsonl"))[-1]
    header = json.loads(log.read_text().splitlines()[0])
    assert header["controller"]["kind"] == "student" and header["controller"]["version"] == "v0001"

    # a second student without an int8 export, from the base alone: promoted, and the stale int8 file goes
    code, out, err = run_cli(["env", "distill", root, *TINY, "--teacher", "base"], capsys, monkeypatch)
    assert code == 0, err
    assert "student v0002" in out and "base alone" in out
    code, out, _ = run_cli(["env", "distill", "eval", root, "--promote"], capsys, monkeypatch)
    assert code == 0 and "regression vs current student" in out
    assert not (root / "student" / "student.int8.onnx").exists()
    assert load_promoted_student(load_project(root)).version == "v0002"

    code, out, _ = run_cli(["env", "rollback", root, "student"], capsys, monkeypatch)
    assert code == 0 and "v0002 -> v0001" in out
    assert load_promoted_student(load_project(root)).version == "v0001"


def test_distill_without_a_promoted_residual_says_so_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    root = make_project(tmp_path / "dog", **LOOSE)
    code, _, err = run_cli(["env", "distill", root, "--epochs", "1"], capsys, monkeypatch)
    assert code == 2
    assert "no promoted residual to distill" in err and "--teacher base" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_distill_eval_without_a_student_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    root = make_project(tmp_path / "dog", **LOOSE)
    code, _, err = run_cli(["env", "distill", "eval", root], capsys, monkeypatch)
    assert code == 1 and "no student distilled yet" in err and "Traceback" not in err


@pytest.mark.slow
def test_tampered_student_is_refused_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    root = make_project(tmp_path / "dog", **LOOSE)
    _promote_fresh_residual(root)
    code, _, err = run_cli(["env", "distill", root, "--epochs", "1", "--rounds", "1", "--episodes", "20"],
                           capsys, monkeypatch)
    assert code == 0, err
    onnx_file = root / ".cadenza" / "registry" / "student" / "v0001" / "student.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    code, _, err = run_cli(["env", "distill", "eval", root], capsys, monkeypatch)
    assert code == 2 and "content hash does not match" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_shows_defaults(capsys, monkeypatch) -> None:
    code, out, _ = run_cli(["env", "distill", "--help"], capsys, monkeypatch)
    assert code == 0
    for flag in ("--epochs", "--quantize", "--device", "--real", "--teacher", "--rounds"):
        assert flag in out
    assert "default: 60" in out
    code, out, _ = run_cli(["env", "distill", "eval", "--help"], capsys, monkeypatch)
    assert code == 0 and "--promote" in out and "--episodes" in out
