"""Tracking end to end: TensorBoard event files, and a real ``mlflow server`` on 127.0.0.1 started here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza.tracking import flatten, numeric
from tests.conftest import free_port, make_project, run_cli

SMALL = {"task.num_envs": "16", "residual.hidden_dim": "32", "governance.eval_episodes": "40",
         "governance.min_episodes": "20", "governance.max_eval_episodes": "120"}


def test_flatten_and_numeric_keep_finite_numbers_only() -> None:
    d = {"a": {"b": 1, "c": {"d": 2.5}}, "e": "x", "f": float("nan"), "g": True, "h": [1, 2]}
    assert flatten(d)["a.c.d"] == 2.5 and "a" not in flatten(d)
    assert numeric(d) == {"a.b": 1.0, "a.c.d": 2.5, "g": 1.0}


@pytest.mark.slow
def test_train_writes_tensorboard_event_files_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = make_project(tmp_path / "dog", **SMALL)
    code, out, err = run_cli(["env", "residual", "train", root, "--steps", "8192"], capsys, monkeypatch)
    assert code in (0, 3, 4), err
    runs = list((root / "runs").glob("train-*"))
    assert len(runs) == 1 and f"tracking: tensorboard {runs[0]}" in " ".join(out.split())
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    report = json.loads((root / "residual" / "train_report.json").read_text())
    assert "success_rate" in scalars and "approx_kl" in scalars and "scorecard.episodes" in scalars
    steps = [e.step for e in acc.Scalars("approx_kl")]
    assert steps == [r["env_steps_total"] for r in report["history"]]
    assert {"params/text_summary", "verdict/text_summary", "status/text_summary"} <= set(acc.Tags()["tensors"])


def test_track_none_writes_nothing_and_mlflow_needs_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "dog", **SMALL)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_cli(["env", "residual", "train", root, "--steps", "8192", "--track", "mlflow"], capsys,
                           monkeypatch)
    assert code == 2 and "[tracking] uri" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["env", "residual", "train", root, "--steps", "4096", "--track", "none"], capsys,
                           monkeypatch)
    assert code in (0, 3, 4), err
    assert not (root / "runs").exists()


# ---------------------------------------------------------------------------------------------- MLflow
@pytest.mark.slow
def test_train_logs_params_metrics_and_artefacts_to_mlflow(mlflow_server: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    root = make_project(tmp_path / "dog", **SMALL, **{"tracking.uri": f'"{mlflow_server}"'})
    code, _out, err = run_cli(["env", "residual", "train", root, "--steps", "8192", "--track", "mlflow"], capsys,
                             monkeypatch)
    assert code in (0, 3, 4), err
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("dog")
    (run,) = client.search_runs([exp.experiment_id])
    report = json.loads((root / "residual" / "train_report.json").read_text())
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("train-")
    assert run.data.params["algorithm"] == "ppo" and run.data.params["plan.hyperparameters.gamma"]
    assert run.data.tags["verdict"] == report["verdict"] and run.data.tags["version"] == report["version"]
    history = client.get_metric_history(run.info.run_id, "success_rate")
    assert [m.step for m in history] == [r["env_steps_total"] for r in report["history"]]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"train_report.json", "learning_curve.png"} <= names
    assert not (root / "runs").exists()  # mlflow instead of TensorBoard, not both


def test_mlflow_server_down_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    root = make_project(tmp_path / "dog", **SMALL, **{"tracking.uri": f'"http://127.0.0.1:{free_port()}"'})
    code, _, err = run_cli(["env", "residual", "train", root, "--steps", "8192", "--track", "mlflow"], capsys,
                           monkeypatch)
    assert code == 1 and "cannot reach the tracking server" in err and len(err.strip().splitlines()) == 1
    assert not (root / "residual" / "train_report.json").exists() and not (root / "residual" / "run").exists()
