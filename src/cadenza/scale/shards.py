"""Stateful shard workers: N objects, each in a single-threaded process of its own, called in lockstep.

A *shard* is an object built from a plain-data spec (``factory(spec)``, where ``factory`` is an
importable class such as :class:`cadenza.residual.rollout.RolloutShard`) whose methods step a slice of
a vectorised task and return numpy arrays. :class:`ShardWorkers` hosts N of them:

* ``backend="local"``: N spawned processes on this machine, talking over pipes;
* ``backend="ray"``: N Ray actors with one CPU each (at ``address``; None: a local Ray instance
  started for the workers and stopped by :meth:`ShardWorkers.close`).

``call(method, *args)`` calls ``method(*args)`` on every shard at once and returns the results in
shard order (on Ray each argument goes through the object store once, for all actors).

Every shard process starts on one thread (``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``
and one torch thread before the shard is built): MKL and oneDNN choose their kernels, and so their
float rounding, by the thread count a process starts with, so a shard computes the same bits whichever
backend hosts it (and whatever the driver's own thread settings are).

A shard that fails raises a :class:`cadenza.errors.CadenzaError` naming it; a Ray actor that dies
(its process killed, its node lost) stops the call with one line ending in ``lost_hint``. Shards are
not restarted: their state (envs mid-episode) would be lost, and a re-run would not give the numbers
of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from cadenza.errors import CadenzaError

SHARD_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class _Host:
    """Builds the shard in its (new) process after pinning it to one thread; forwards calls to it."""

    def __init__(self, factory: Callable[[Any], Any], spec: Any) -> None:
        from cadenza.accel.device import set_threads

        set_threads(1)
        self.shard = factory(spec)

    def ready(self) -> bool:
        return True

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)

    def close(self) -> None:
        close = getattr(self.shard, "close", None)
        if close is not None:
            close()


def _serve(conn: Any, factory: Callable[[Any], Any], spec: Any) -> None:
    """A local shard process: build the shard, then answer ``(method, args)`` requests until ``close``."""
    try:
        host = _Host(factory, spec)
    except BaseException as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ok", True))
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if method is None:
            break
        try:
            conn.send(("ok", host.call(method, *args)))
        except BaseException as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
    host.close()


class ShardWorkers:
    def __init__(self, factory: Callable[[Any], Any], specs: Sequence[Any], *, backend: str = "local",
                 address: str | None = None, label: str = "shard", lost_hint: str = "") -> None:
        self.backend, self.label, self.lost_hint = backend, label, lost_hint
        self.cluster: dict[str, Any] = {}
        self._closed = False
        if backend == "ray":
            self._start_ray(factory, specs, address)
        else:
            self._start_local(factory, specs)

    # ------------------------------------------------------------------ local processes
    def _start_local(self, factory: Callable[[Any], Any], specs: Sequence[Any]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        saved = {k: os.environ.get(k) for k in SHARD_THREAD_ENV}
        os.environ.update(SHARD_THREAD_ENV)  # the children inherit it when they start
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        try:
            for spec in specs:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, factory, spec), daemon=True)
                proc.start()
                self._conns.append(parent)
                self._procs.append(proc)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            self._answers()
        except BaseException:
            self.close()
            raise

    def _answers(self) -> list[Any]:
        out = []
        for i, c in enumerate(self._conns):
            try:
                kind, value = c.recv()
            except EOFError:
                raise CadenzaError(f"{self.label} {i} (a local process) exited unexpectedly{self.lost_hint} (from "
                                   "a Python script: the spawned process imports it, so its own code must sit "
                                   "under `if __name__ == '__main__':`)") from None
            if kind == "error":
                raise CadenzaError(f"{self.label} {i}: {value}")
            out.append(value)
        return out

    # ------------------------------------------------------------------ Ray actors
    def _start_ray(self, factory: Callable[[Any], Any], specs: Sequence[Any], address: str | None) -> None:
        from cadenza.scale.ray_map import cluster_info, ray_session

        self._session = ray_session(address, len(specs))
        self._ray = self._session.__enter__()
        from ray.exceptions import RayError

        host = self._ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": SHARD_THREAD_ENV})(_Host)
        self._actors = [host.remote(factory, spec) for spec in specs]
        try:  # built (imports, task, policies) before the first call
            self._ray.get([a.ready.remote() for a in self._actors])
        except RayError as e:
            self.close()
            raise CadenzaError(f"a Ray {self.label} could not start: {str(e).strip().splitlines()[-1][:300]}") \
                from None
        self.cluster = {**cluster_info(self._ray), "address": address or "local"}

    # ------------------------------------------------------------------ calls
    def call(self, method: str, *args: Any) -> list[Any]:
        """``shard.method(*args)`` on every shard at once; the results in shard order."""
        if self.backend != "ray":
            for c in self._conns:
                c.send((method, args))
            return self._answers()
        from ray.exceptions import RayActorError, RayError, RayTaskError

        refs = [self._ray.put(a) for a in args]  # once for all actors
        try:
            return self._ray.get([a.call.remote(method, *refs) for a in self._actors])
        except RayTaskError as e:  # the shard's own code raised
            cause = e.as_instanceof_cause()
            raise CadenzaError(f"{self.label}: {type(cause).__name__}: {str(cause).splitlines()[0][:300]}") from None
        except (RayActorError, RayError) as e:
            raise CadenzaError(f"a Ray {self.label} was lost mid-round ({type(e).__name__}){self.lost_hint}") \
                from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.backend != "ray":
            for c in self._conns:
                with contextlib.suppress(BrokenPipeError, OSError):
                    c.send((None, ()))
            for p in self._procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
            return
        for a in self._actors:
            with contextlib.suppress(Exception):
                self._ray.kill(a)
        self._session.__exit__(None, None, None)
