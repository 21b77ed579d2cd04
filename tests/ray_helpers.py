"""Functions the Ray tests run inside Ray workers (shipped by value; see ``ship``), and the namespace guard.

Ray binds the machine's network address, so every Ray test runs only inside a network namespace that
has nothing but loopback: ``scripts/loopback-only.sh`` (what ``make test`` uses for ``-m ray``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

LOOPBACK_ONLY = [name for _, name in socket.if_nameindex()] == ["lo"]
needs_loopback_only = pytest.mark.skipif(
    not LOOPBACK_ONLY, reason="Ray tests run only in a loopback-only network namespace: "
                              "scripts/loopback-only.sh .venv/bin/python -m pytest -m ray (make test does)")


def ship() -> None:
    """Pickle this module's functions by value, so Ray workers need not import the tests package."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square_slowly(x: int) -> int:
    time.sleep(0.2)
    return x * x


def fail_on_three(x: int) -> int:
    from cadenza.errors import CadenzaError

    if x == 3:
        raise CadenzaError("item 3 is bad")
    return x


def node_after_a_second(_: int) -> str:
    import ray

    time.sleep(1.0)
    return ray.get_runtime_context().get_node_id()


def run_job_killed_on_first_attempt(item: tuple[Any, str]) -> dict[str, Any]:
    """A bench job whose worker process is killed (SIGKILL) one second into its first attempt; the
    attempt is recorded in ``marker`` (a path), so the re-run goes through."""
    from cadenza.bench.arms import run_job

    job, marker = item
    first = not Path(marker).exists()
    Path(marker).write_text(str(os.getpid()))
    if first:
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
    return run_job(job)
