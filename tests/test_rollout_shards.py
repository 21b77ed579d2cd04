"""Sharded rollouts (``train --rollout-workers N``) on the local backend: real shard processes, real proxy.

The Ray side of the same contract (identical numbers on Ray actors, a lost actor) is in
``tests/test_scale_ray.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cadenza.project.config import load_project
from cadenza.residual.rollout import shard_seeds, shard_sizes
from cadenza.residual.train import train_residual
from cadenza.scale.backend import ScaleSettings
from tests.conftest import make_project, run_cli

SMALL = {"task.num_envs": "16", "residual.hidden_dim": "32", "governance.eval_episodes": "40",
         "governance.min_episodes": "20", "governance.max_eval_episodes": "120"}


def small(path: Path, **extra: str) -> Path:
    return make_project(path, **{**SMALL, **extra})


def history_numbers(report: dict) -> str:
    """A training's numbers without its timings."""
    rows = [{k: v for k, v in r.items() if k not in ("wall_s", "rollout_s", "rollout_overhead_s", "validation_wall_s")}
            for r in report["history"]]
    return json.dumps([rows, report["scorecard"]], sort_keys=True)


def test_shard_sizes_and_seeds_are_fixed_by_the_seed_and_the_count() -> None:
    assert shard_sizes(16, 3) == [6, 5, 5] and sum(shard_sizes(64, 7)) == 64
    assert shard_seeds(7, 3) == shard_seeds(7, 3) and len(set(shard_seeds(7, 3))) == 3
    assert shard_seeds(7, 2) != shard_seeds(8, 2)


@pytest.mark.slow
def test_sharded_training_is_reproducible_and_reports_where_it_ran(tmp_path: Path) -> None:
    reports = []
    for name in ("a", "b"):
        root = small(tmp_path / name)
        res = train_residual(load_project(root), steps=8192, seed=3, scale=ScaleSettings(rollout_workers=2))
        reports.append(json.loads(res.report_path.read_text()))
    a, b = reports
    assert history_numbers(a) == history_numbers(b)  # same seed, same shard count: same numbers
    assert a["scale"] == {"backend": "local", "ray_address": None, "rollout_workers": 2}
    rows = a["history"]
    assert all(r["rollout_s"] > 0 and 0 <= r["rollout_overhead_s"] <= r["rollout_s"] for r in rows)
    assert sum(r["env_steps"] for r in rows) == a["env_steps"] >= 8192
    assert all(np.isfinite(r["value_loss"]) for r in rows)


def test_rollout_worker_flags_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = small(tmp_path / "dog")
    for args, needle in ((["--rollout-workers", "0"], "--rollout-workers"),
                         (["--rollout-workers", "17"], "more shards than the 16 parallel envs"),
                         (["--ray-address", "auto"], "only used with --backend ray")):
        code, _, err = run_cli(["env", "residual", "train", root, "--steps", "8192", *args], capsys, monkeypatch)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (root / "residual" / "train_report.json").exists()
    sac = small(tmp_path / "sac", **{"residual.algorithm": '"sac"'})
    code, _, err = run_cli(["env", "residual", "train", sac, "--steps", "8192", "--rollout-workers", "2"], capsys,
                           monkeypatch)
    assert code == 2 and "built for PPO" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_sharded_dagger_collects_in_shard_processes_and_records_it(tmp_path: Path) -> None:
    from cadenza.distill.build import distill

    root = small(tmp_path / "dog")
    res = distill(load_project(root), teacher="base", rounds=2, epochs=3, envs=32,
                  scale=ScaleSettings(rollout_workers=2))
    meta = json.loads((root / "student" / "candidate" / "student.json").read_text())
    assert meta["scale"] == {"backend": "local", "ray_address": None, "rollout_workers": 2}
    rounds = meta["dagger"]["rounds"]
    assert len(rounds) == 2 and rounds[1]["student_share"] > 0 and rounds[0]["episodes"] > 0
    assert res.report["dagger"]["samples"] == sum(r["samples"] for r in rounds)
