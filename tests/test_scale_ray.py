"""The Ray backend on a real local Ray instance (2 CPUs, its own temp dir), in a loopback-only namespace.

The bench on Ray gives the numbers of the local backend; a worker killed mid-run is replaced and its
run gives the same result; errors raised by the work stop the map with their own message.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli
from tests.ray_helpers import needs_loopback_only

pytestmark = [pytest.mark.ray, needs_loopback_only]
ray = pytest.importorskip("ray")

EXAMPLE = ROOT / "examples" / "rescue-dog"
SMALL = ["--steps", "4096", "--seeds", "2", "--arms", "residual,full", "--eval-episodes", "30", "--workers", "2"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray instance for the module (2 CPUs); ray_map and the CLI reuse it and leave it running."""
    from tests import ray_helpers

    tmp = tempfile.mkdtemp(prefix="cadenza-ray-test-")
    ray.init(address="local", num_cpus=2, _temp_dir=tmp, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray_helpers.ship()
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def copy_example(dst: Path) -> Path:
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".cadenza", ".cadenza-env", "bench", "lora"))
    return dst


def runs(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must not depend on the backend: per arm and seed, the final card and the learning curve."""
    return sorted((a["id"], r["seed"], json.dumps(r["final"], sort_keys=True),
                   json.dumps(r["curve"], sort_keys=True), r["env_steps"], r["steps_to_threshold"])
                  for a in report["arms"] for r in a["runs"])


def test_ray_map_streams_results_and_returns_them_in_item_order(local_ray: Any) -> None:
    from cadenza.scale.ray_map import ray_map
    from tests.ray_helpers import square_slowly

    seen: list[int] = []
    res = ray_map(square_slowly, list(range(6)), on_done=lambda i, r: seen.append(i))
    assert res.results == [i * i for i in range(6)] and sorted(seen) == list(range(6))
    assert res.retries == 0 and res.cluster["cpus"] == 2 and res.cluster["nodes"] == 1
    assert ray.is_initialized()  # an instance the caller started is left running


def test_an_error_in_the_work_stops_the_map_with_its_own_message(local_ray: Any) -> None:
    from cadenza.errors import CadenzaError
    from cadenza.scale.ray_map import ray_map
    from tests.ray_helpers import fail_on_three

    with pytest.raises(CadenzaError, match="item 3 is bad"):
        ray_map(fail_on_three, list(range(5)))


def test_bench_on_ray_gives_the_local_numbers(local_ray: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    reports = {}
    for backend in ("local", "ray"):
        root = copy_example(tmp_path / backend)
        code, _out, err = run_cli(["env", "residual", "bench", root, *SMALL, "--backend", backend], capsys, monkeypatch)
        assert code in (0, 3, 4), err
        reports[backend] = json.loads(next((root / "bench").glob("*/report.json")).read_text())
    local, on_ray = reports["local"], reports["ray"]
    assert runs(local) == runs(on_ray) and local["verdict"]["outcome"] == on_ray["verdict"]["outcome"]
    assert local["scale"]["backend"] == "local" and on_ray["scale"]["backend"] == "ray"
    assert on_ray["scale"]["cpus"] == 2 and on_ray["scale"]["retries"] == 0
    assert "--backend ray" in on_ray["command"] and all(r["threads"] == 1 for a in on_ray["arms"] for r in a["runs"])


def test_a_worker_killed_mid_run_is_replaced_and_the_run_gives_the_same_result(local_ray: Any,
                                                                                 tmp_path: Path) -> None:
    from cadenza.bench.arms import run_job
    from cadenza.bench.runner import _jobs, resolve_settings
    from cadenza.project.config import load_project
    from cadenza.scale.ray_map import ray_map
    from tests.ray_helpers import run_job_killed_on_first_attempt

    proj = load_project(copy_example(tmp_path / "dog"))
    s = resolve_settings(proj, steps=16384, seeds=1, arms="residual", eval_episodes=30, workers=1)
    job = replace(_jobs(proj, s, 1)[0], threads=1)
    expected = run_job(job)
    marker = tmp_path / "attempt"
    res = ray_map(run_job_killed_on_first_attempt, [(job, str(marker))])
    assert res.retries == 1 and marker.exists()
    got = res.results[0]
    assert got["final"] == expected["final"] and got["curve"] == expected["curve"]
    assert got["env_steps"] == expected["env_steps"] == 16384


# ------------------------------------------------------------------------------ training on Ray actors
def test_train_on_ray_actors_gives_the_local_numbers(local_ray: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_rollout_shards import history_numbers, small

    reports = {}
    for backend in ("local", "ray"):
        root = small(tmp_path / backend)
        code, out, err = run_cli(["env", "residual", "train", root, "--steps", "8192", "--seed", "3",
                                  "--rollout-workers", "2", "--backend", backend], capsys, monkeypatch)
        assert code in (0, 3, 4), err
        assert "rollouts: 2 shards on" in out
        reports[backend] = json.loads((root / "residual" / "train_report.json").read_text())
    assert history_numbers(reports["local"]) == history_numbers(reports["ray"])
    assert reports["local"]["verdict"] == reports["ray"]["verdict"]
    scale = reports["ray"]["scale"]
    assert scale["backend"] == "ray" and scale["rollout_workers"] == 2 and scale["cpus"] == 2
    # after round 0 (which waits for nothing: the actors are built before it), Ray adds milliseconds per round
    assert all(r["rollout_overhead_s"] < r["rollout_s"] for r in reports["ray"]["history"])


def test_a_rollout_actor_lost_mid_run_stops_with_one_line_and_the_run_resumes(
        local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cadenza.errors import CadenzaError
    from cadenza.project.config import load_project
    from cadenza.residual.rollout import ShardPool
    from cadenza.residual.train import train_residual
    from cadenza.scale.backend import ScaleSettings
    from tests.test_rollout_shards import small

    root = small(tmp_path / "dog")
    scale = ScaleSettings(backend="ray", rollout_workers=2)
    collect = ShardPool.collect
    calls = []

    def kill_on_the_second_round(self: ShardPool, actor_state: Any, collision_cost: float) -> Any:
        calls.append(1)
        if len(calls) == 2:
            ray.kill(self._workers._actors[0])  # the worker process is gone mid-run
        return collect(self, actor_state, collision_cost)

    monkeypatch.setattr(ShardPool, "collect", kill_on_the_second_round)
    with pytest.raises(CadenzaError, match=r"lost mid-round.*run the same train command again to resume"):
        train_residual(load_project(root), steps=12288, seed=3, scale=scale)
    progress = json.loads((root / "residual" / "run" / "progress.json").read_text())
    assert len(progress["history"]) == 1 and not (root / "residual" / "train_report.json").exists()
    monkeypatch.setattr(ShardPool, "collect", collect)
    res = train_residual(load_project(root), steps=12288, seed=3, scale=scale)
    assert res.resumed_from == 1 and res.env_steps >= 12288 and res.report_path.exists()


def test_dagger_on_ray_actors_gives_the_local_student(local_ray: Any, tmp_path: Path) -> None:
    from cadenza.distill.build import distill
    from cadenza.project.config import load_project
    from cadenza.scale.backend import ScaleSettings
    from tests.test_rollout_shards import small

    metas = {}
    for backend in ("local", "ray"):
        root = small(tmp_path / backend)
        distill(load_project(root), teacher="base", rounds=2, epochs=3, envs=32,
                scale=ScaleSettings(backend=backend, rollout_workers=2))
        metas[backend] = json.loads((root / "student" / "candidate" / "student.json").read_text())
    local, on_ray = metas["local"], metas["ray"]
    # the same student, bit for bit: the ONNX file, and every tensor of the safetensors file (whose header
    # lists its metadata in an order safetensors does not fix, so its bytes can differ between processes)
    assert local["sha256"]["student.onnx"] == on_ray["sha256"]["student.onnx"]
    from safetensors.numpy import load_file

    a, b = (load_file(tmp_path / k / "student" / "candidate" / "student.safetensors") for k in ("local", "ray"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    keep = ("samples", "episodes", "success_rate", "student_share", "train_mse", "val_mse")
    assert [{k: r[k] for k in keep} for r in local["dagger"]["rounds"]] == \
        [{k: r[k] for k in keep} for r in on_ray["dagger"]["rounds"]]
    assert on_ray["scale"]["backend"] == "ray" and on_ray["scale"]["rollout_workers"] == 2
