"""Run the correction on a worker thread so the control loop waits for it at most its budget.

A Python thread cannot be killed, so a correction that overruns keeps its worker busy; until it
finishes, later steps do not wait at all (status ``busy``) and its late result is dropped. Each
request carries a sequence number, so a result can only ever answer the step that asked for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

Status = Literal["ok", "timeout", "busy", "error"]


class DeadlineWorker:
    def __init__(self, fn: Callable[..., Any], name: str = "cadenza-correction") -> None:
        self.fn = fn
        self._req: queue.SimpleQueue[tuple[int, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._res: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()
        self._seq = 0
        self._inflight: int | None = None
        self.late_results = 0  # results that arrived after their step had given up on them
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._req.get()
            if item is None:
                return
            seq, args = item
            try:
                self._res.put((seq, self.fn(*args), None))
            except BaseException as e:  # report everything; the worker itself must survive
                self._res.put((seq, None, e))

    def _drain(self) -> None:
        while self._inflight is not None:
            try:
                seq, _, _ = self._res.get_nowait()
            except queue.Empty:
                return
            self.late_results += 1
            if seq == self._inflight:
                self._inflight = None

    @property
    def busy(self) -> bool:
        self._drain()
        return self._inflight is not None

    def call(self, timeout_s: float, *args: Any) -> tuple[Status, Any]:
        """``fn(*args)`` on the worker; ``("ok", value)`` if it answered within ``timeout_s``."""
        if self.busy:
            return "busy", None
        self._seq += 1
        seq = self._seq
        self._inflight = seq
        deadline = time.perf_counter() + timeout_s
        self._req.put((seq, args))
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return "timeout", None
            try:
                rseq, value, err = self._res.get(timeout=left)
            except queue.Empty:
                return "timeout", None
            if rseq != seq:  # an older step's answer: drop it
                self.late_results += 1
                continue
            self._inflight = None
            if err is not None:
                return "error", err
            return "ok", value

    def close(self, timeout_s: float = 1.0) -> None:
        self._req.put(None)
        self._thread.join(timeout_s)
