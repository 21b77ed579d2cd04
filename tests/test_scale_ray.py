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
