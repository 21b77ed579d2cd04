"""The Ray backend on a two-node local cluster (``ray.cluster_utils.Cluster``, one CPU per node), joined by
address as a team's cluster would be: work lands on both nodes, and the bench's numbers do not change."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.ray_helpers import needs_loopback_only
from tests.test_scale_ray import SMALL, copy_example, runs

pytestmark = [pytest.mark.ray, needs_loopback_only]
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Any]:
    import os

    from ray.cluster_utils import Cluster

    from tests import ray_helpers

    assert not ray.is_initialized()
    tmp = tempfile.mkdtemp(prefix="crc-")  # short: Ray's socket paths live under it (107 bytes at most)
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp  # the cluster's files and address file go here, not into a shared /tmp/ray
    os.makedirs(os.path.join(tmp, "ray"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray_helpers.ship()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
    if before is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = before
    shutil.rmtree(tmp, ignore_errors=True)


def test_spread_tasks_land_on_both_nodes(two_nodes: Any) -> None:
    from cadenza.scale.ray_map import ray_map
    from tests.ray_helpers import node_after_a_second

    res = ray_map(node_after_a_second, list(range(4)), address=two_nodes.address, spread=True)
    assert res.cluster["nodes"] == 2 and res.cluster["cpus"] == 2
    assert len(set(res.results)) == 2 and res.as_dict()["nodes_used"] == 2
    assert not ray.is_initialized()  # joined by address for the call, disconnected after it


def test_bench_on_the_cluster_uses_both_nodes_and_gives_the_local_numbers(
        two_nodes: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    reports = {}
    for backend, extra in (("local", []), ("ray", ["--ray-address", two_nodes.address])):
        root = copy_example(tmp_path / backend)
        code, _, err = run_cli(["env", "residual", "bench", root, *SMALL, "--backend", backend, *extra], capsys,
                               monkeypatch)
        assert code in (0, 3, 4), err
        reports[backend] = json.loads(next((root / "bench").glob("*/report.json")).read_text())
    assert runs(reports["local"]) == runs(reports["ray"])
    scale = reports["ray"]["scale"]
    assert scale["nodes"] == 2 and scale["nodes_used"] == 2 and scale["ray_address"] == two_nodes.address
