"""Run ``fn(item)`` for every item as a Ray task: one CPU each, results streamed back as they finish.

Contract:

* ``fn`` must be importable on every node (a module-level function of an installed package, e.g.
  :func:`cadenza.bench.arms.run_job`) and deterministic in its item: a re-run gives the same result;
* each task asks for one CPU; Ray sets ``OMP_NUM_THREADS=1`` in its workers, and the item itself
  says how many torch threads to use (the bench's jobs say 1);
* results come back in completion order through ``on_done(index, result)``; :class:`RayMapResult`
  holds them in item order, so what a caller reports does not depend on the cluster's timing;
* a task whose worker or node dies (the process killed, the node lost) is submitted again, at most
  ``max_retries`` times per item, and counted in ``retries``; an exception raised by ``fn`` itself is
  not retried: it stops the map (with the original exception when it is a
  :class:`cadenza.errors.CadenzaError`, so a command still prints one line);
* Ctrl-C cancels the tasks still pending and shuts down a Ray instance the map started.

Ray binds the machine's network address (see ``docs/scale.md``); tests run it in a network namespace
that has only loopback.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cadenza.errors import CadenzaError

DEFAULT_MAX_RETRIES = 2


@dataclass
class RayMapResult:
    results: list[Any]  # in item order
    nodes: list[str]  # the node id each item's result came from, in item order
    retries: int
    cluster: dict[str, Any] = field(default_factory=dict)  # nodes, cpus, address

    def as_dict(self) -> dict[str, Any]:
        return {"retries": self.retries, "nodes_used": len(set(self.nodes)), **self.cluster}


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected: an instance the caller already started is used and left running; otherwise a
    local instance (``address=None``, its own temp dir, so a stale ``/tmp/ray`` session is never joined)
    or the cluster at ``address`` is connected for the block and disconnected after it."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    tmp = None
    try:
        if address is None:
            tmp = tempfile.mkdtemp(prefix="cadenza-ray-")
            ray.init(address="local", num_cpus=num_cpus, _temp_dir=tmp, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as e:  # ConnectionError, a bad address, a cluster that is not up
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise CadenzaError(f"cannot start or join {where}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") \
            from None
    try:
        yield ray
    finally:
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def cluster_info(ray: Any) -> dict[str, Any]:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return {"nodes": len(alive), "cpus": int(ray.cluster_resources().get("CPU", 0))}


def _call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    import ray

    return fn(item), ray.get_runtime_context().get_node_id()


def ray_map(fn: Callable[[Any], Any], items: Sequence[Any], *, address: str | None = None,
            num_cpus: int | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
            on_done: Callable[[int, Any], None] | None = None, spread: bool = False) -> RayMapResult:
    """``[fn(item) for item in items]`` as Ray tasks (see the module's contract). ``spread`` asks Ray to
    place the tasks on as many nodes as it can (its ``SPREAD`` strategy)."""
    with ray_session(address, num_cpus) as ray:
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if spread:
            opts["scheduling_strategy"] = "SPREAD"
        remote = ray.remote(**opts)(_call)
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        attempts = [0] * len(items)

        def submit(i: int) -> None:
            attempts[i] += 1
            pending[remote.remote(fn_ref, items[i])] = i

        for i in range(len(items)):
            submit(i)
        results: list[Any] = [None] * len(items)
        nodes: list[str] = [""] * len(items)
        retries = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        results[i], nodes[i] = ray.get(ref)
                    except RayTaskError as e:  # fn raised: not a lost worker, do not retry
                        cause = e.as_instanceof_cause()
                        if isinstance(cause, CadenzaError):
                            raise cause from None
                        raise CadenzaError(f"a Ray task failed: {str(e).splitlines()[0][:300]}") from None
                    except TaskCancelledError:
                        raise KeyboardInterrupt from None
                    except RayError as e:  # the worker or its node died: run the item again
                        if attempts[i] > max_retries:
                            raise CadenzaError(f"Ray lost the worker of task {i} {attempts[i]} times (last: "
                                               f"{type(e).__name__}); giving up") from None
                        retries += 1
                        submit(i)
                        continue
                    if on_done is not None:
                        on_done(i, results[i])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        info = {**cluster_info(ray), "address": address or "local"}
        return RayMapResult(results=results, nodes=nodes, retries=retries, cluster=info)
