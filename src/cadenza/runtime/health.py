"""Counters the runtime keeps per step, and the health report built from them."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Why a step used the base action alone while the correction was switched on.
FALLBACK_CAUSES = ("timeout", "nan_output", "nan_obs", "exception")


class LatencyWindow:
    """The last ``size`` latencies in nanoseconds, for p50 / p99 without growing memory.

    A ``deque`` append of a Python int costs a fraction of writing into a numpy array per step.
    """

    def __init__(self, size: int = 8192) -> None:
        self.size = max(1, int(size))
        self.ring: deque[int] = deque(maxlen=self.size)
        self.add = self.ring.append  # the per-step call, bound once

    def values(self) -> np.ndarray:
        return np.fromiter(self.ring, dtype=np.int64, count=len(self.ring))

    @classmethod
    def pooled(cls, windows: list[LatencyWindow]) -> LatencyWindow:
        vals = np.concatenate([w.values() for w in windows]) if windows else np.zeros(0, dtype=np.int64)
        out = cls(max(1, vals.shape[0]))
        out.ring.extend(vals.tolist())
        return out

    def summary_us(self) -> dict[str, float | int | None]:
        v = self.values() / 1e3
        if v.shape[0] == 0:
            return {"count": 0, "p50": None, "p99": None, "max": None}
        return {"count": int(v.shape[0]), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                "max": float(v.max())}

    def clear(self) -> None:
        self.ring.clear()


@dataclass
class HealthReport:
    kind: str  # "residual" | "student" | "base"
    backend: str
    mode: str  # "check" (inline, late output discarded) | "preempt" (worker thread, deadline enforced)
    enabled: bool
    budget_us: float
    steps: int
    corrected_steps: int  # steps whose action includes the correction
    disabled_steps: int  # steps run with the switch off
    fallbacks: dict[str, int]  # by cause: FALLBACK_CAUSES
    base_faults: int  # base raised or returned non-finite / wrong-shaped actions (held the last action)
    mean_abs_delta: float  # residual: |gate * delta| after the rate limit (share of its bound); student: |a - a_base|
    max_abs_delta: float
    # "step" (whole call) and "correction" (residual / student only)
    latency_us: dict[str, dict[str, float | int | None]]
    last_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback_total(self) -> int:
        return sum(self.fallbacks.values())

    @property
    def fallback_share(self) -> float:
        asked = self.steps - self.disabled_steps - self.base_faults
        return self.fallback_total / asked if asked > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fallback_total"], d["fallback_share"] = self.fallback_total, self.fallback_share
        return d

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for a console table."""
        st, co = self.latency_us["step"], self.latency_us["correction"]
        causes = ", ".join(f"{c} {n}" for c, n in self.fallbacks.items() if n) or "none"
        return [
            ("correction", f"{self.kind} ({self.backend}), {'on' if self.enabled else 'OFF'}"),
            ("deadline", f"{self.budget_us:.0f} us per step ({self.mode})"),
            ("steps", f"{self.steps:,} ({self.corrected_steps:,} corrected, {self.disabled_steps:,} switched off)"),
            ("fallbacks", f"{self.fallback_total:,} ({self.fallback_share:.2%}): {causes}"),
            ("base faults", f"{self.base_faults:,}"),
            ("mean |delta|", f"{self.mean_abs_delta:.4f} (max {self.max_abs_delta:.4f})"),
            ("latency p50 / p99", f"step {_us(st['p50'])} / {_us(st['p99'])} us; "
                                  f"correction {_us(co['p50'])} / {_us(co['p99'])} us"),
        ]


def _us(v: float | int | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"
