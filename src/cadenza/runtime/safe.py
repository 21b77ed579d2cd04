"""The safe runtime: base + residual (or a student) for one robot, one control step at a time.

    rt = SafeRuntime.for_residual(base, actor, budget_us=2000)
    while running:
        action = rt.step(obs)          # always finite and within [low, high]
        if episode_over: rt.reset()
    rt.disable(); rt.enable()          # the switch, at any time, from any thread
    rt.health()                        # counters, fallbacks by cause, mean |delta|, latency p50 / p99

Every step the base runs first. The correction then runs under a deadline and its output is used
only if all of these hold; otherwise that step's action is the base action alone (clamped to the
bounds) and the cause is counted:

* ``nan_obs``: the observation has a NaN / inf (the correction is not asked; the base reads the
  observation with each bad entry replaced by its last finite reading, i.e. sample-and-hold);
* ``exception``: the correction raised;
* ``timeout``: it took longer than ``budget_us`` (``mode="check"``: measured after it returns, the
  late output is dropped; ``mode="preempt"``: it runs on a worker thread and the step stops waiting
  at the deadline, so a hung correction cannot stall the loop);
* ``nan_output``: its output has a NaN / inf (or is not the size the runtime expects).

For a residual the output goes through the control law of training and evaluation (alpha, gate,
rate limit, clamp): :func:`cadenza.runtime.fast_law.make_law` is
:func:`cadenza.residual.control_law.control_law` written out on Python floats for one robot, equal to
it bit for bit on float64 inputs (tested). After a fallback step the rate limit restarts from zero,
so the residual ramps back in rather than jumping. A base that raises or returns a bad action is not
the runtime's to hide: by default that raises :class:`BaseFault` (``on_base_fault="hold"`` repeats
the last action instead and counts it).

The per-step path is written for cost (``benchmarks/runtime_overhead.py`` measures it): values are
checked and combined as Python floats, because at this size each numpy call costs far more than its
arithmetic; the residual's forward is :class:`~cadenza.runtime.numpy_actor.NumpyResidual` (float32,
seven numpy calls); counters are integer increments and one ``deque`` append per latency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from cadenza.runtime.fast_law import clamp, make_law
from cadenza.runtime.health import FALLBACK_CAUSES, HealthReport, LatencyWindow

Mode = Literal["check", "preempt"]

DEFAULT_BUDGET_US = 2000.0  # 10% of a 50 Hz control period

_now = time.perf_counter_ns
_isfinite = math.isfinite
_ndarray = np.ndarray
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class BaseFault(RuntimeError):
    """The base policy raised or returned a non-finite / wrong-shaped action."""


class SafeRuntime:
    """Base always; correction when it is on time, finite and switched on. See the module docstring.

    Per step the values are checked as Python floats (``tolist()``): a NaN or inf in a list makes its
    sum NaN or inf, and for a handful of numbers ``math.isfinite(sum(values))`` costs less than one
    numpy call. (Finite values so large that their sum overflows, around 1e307, count as non-finite:
    no observation or action that size is sane, so this errs on the safe side.)
    """

    def __init__(self, base: Callable[[np.ndarray], np.ndarray], *, correction: Callable[..., np.ndarray] | None,
                 kind: Literal["residual", "student", "base"], act_dim: int, arch: Any = None,
                 backend: str = "custom", budget_us: float = DEFAULT_BUDGET_US, mode: Mode = "check",
                 low: float = -1.0, high: float = 1.0, on_base_fault: Literal["raise", "hold"] = "raise",
                 enabled: bool = True, latency_window: int = 8192) -> None:
        if kind == "residual" and arch is None:
            raise ValueError("a residual needs its architecture (alpha, gate, rate limit)")
        if kind != "base" and correction is None:
            raise ValueError(f"kind {kind!r} needs a correction callable")
        if mode not in ("check", "preempt"):
            raise ValueError(f"mode must be 'check' or 'preempt', got {mode!r}")
        if not budget_us > 0:
            raise ValueError(f"budget_us must be > 0, got {budget_us}")
        if on_base_fault not in ("raise", "hold"):
            raise ValueError(f"on_base_fault must be 'raise' or 'hold', got {on_base_fault!r}")
        if kind == "residual" and arch.act_dim != act_dim:
            raise ValueError(f"act_dim {act_dim} does not match the residual's architecture ({arch.act_dim})")
        if not low <= high:
            raise ValueError(f"bounds must satisfy low <= high, got [{low}, {high}]")
        self.base, self.correction, self.kind, self.arch = base, correction, kind, arch
        self.k, self.low, self.high = int(act_dim), float(low), float(high)
        self._out_dim = arch.out_dim if kind == "residual" else self.k  # raw output size the correction must give
        self._base_shape = (1, self.k)  # the usual base output: a (1, k) float64 array
        self.backend, self.mode, self.on_base_fault = backend, mode, on_base_fault
        self.budget_us = float(budget_us)
        self._budget_ns = int(budget_us * 1e3)
        self.enabled = bool(enabled) and kind != "base"
        self._worker = None
        if mode == "preempt" and correction is not None:
            from cadenza.runtime.worker import DeadlineWorker

            self._worker = DeadlineWorker(correction)
        self._law = make_law(self.k, alpha=arch.alpha, gate=arch.gate, rate_limit=arch.rate_limit, low=self.low,
                             high=self.high) if kind == "residual" else None
        self._zero = [0.0] * self.k
        self._prev = self._zero  # rate-limit state: the residual term of the last step (floats)
        self._delta = self._zero  # the last step's delta (floats); see last_delta
        self._hold: list[float] | None = None  # last finite observation (sample-and-hold for the base)
        self._last_action: np.ndarray | None = None
        self.last_cause = "none"  # what the last step did: corrected | disabled | base | <fallback cause> | base_fault
        self._clear_counters(latency_window)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def for_residual(cls, base: Callable[[np.ndarray], np.ndarray], residual: Any, *, backend: str = "numpy",
                     **kw: Any) -> SafeRuntime:
        """``residual``: a ResidualActor, a ResidualController, or a callable ``(obs, a_base) -> u`` with ``.arch``."""
        from cadenza.residual.network import ResidualActor
        from cadenza.runtime.numpy_actor import NumpyResidual, TorchResidual

        actor = getattr(residual, "actor", residual)
        if isinstance(actor, ResidualActor):
            if backend == "numpy":
                try:
                    fn: Any = NumpyResidual(actor)
                    fn.check_against(actor)
                except ValueError:  # an actor numpy does not mirror: stay exact, use torch
                    fn = TorchResidual(actor)
            elif backend == "torch":
                fn = TorchResidual(actor)
            else:
                raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
        elif callable(residual) and hasattr(residual, "arch"):
            fn = residual
        else:
            raise TypeError("residual must be a ResidualActor, a ResidualController or a callable with .arch")
        arch = fn.arch
        if not arch.use_base:
            raise ValueError("this actor is a full policy (use_base=False), not a residual; use for_student")
        return cls(base, correction=fn, kind="residual", act_dim=arch.act_dim, arch=arch,
                   backend=getattr(fn, "backend", "custom"), **kw)

    @classmethod
    def for_student(cls, base: Callable[[np.ndarray], np.ndarray], student: Callable[[np.ndarray], Any], *,
                    act_dim: int, backend: str = "custom", **kw: Any) -> SafeRuntime:
        """``student``: any batched callable ``obs[1, d] -> action[1, k]`` (e.g. a distilled ONNX student)."""
        def call(obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
            return student(obs.reshape(1, -1))

        return cls(base, correction=call, kind="student", act_dim=act_dim, backend=backend, **kw)

    @classmethod
    def base_only(cls, base: Callable[[np.ndarray], np.ndarray], *, act_dim: int, **kw: Any) -> SafeRuntime:
        return cls(base, correction=None, kind="base", act_dim=act_dim, **kw)

    # ------------------------------------------------------------------ the switch
    def enable(self) -> None:
        if self.kind != "base":
            self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def reset(self) -> None:
        """Episode boundary: the rate limit restarts from zero (and a student's own state, if it has one)."""
        self._prev = self._delta = self._zero
        reset = getattr(self.correction, "reset", None)
        if self.kind == "student" and callable(reset):
            reset()

    @property
    def last_delta(self) -> np.ndarray:
        """The last step's correction: the rate-limited residual term ``gate * delta`` (a student:
        ``action - a_base``); zeros when that step used the base alone."""
        return np.array(self._delta)

    # ------------------------------------------------------------------ one control step
    def __call__(self, obs: Any) -> np.ndarray:
        return self.step(obs)

    def step(self, obs: Any, a_base: Any = None) -> np.ndarray:
        """The action for ``obs`` (shape ``(d,)`` -> ``(k,)``, ``(1, d)`` -> ``(1, k)``); see the module docstring.

        ``a_base``: the base action when the base already ran elsewhere (e.g. in its own hard real-time
        process, or batched over several robots); it is checked like the base's own output.
        A float32 or float64 observation array reaches the base and the correction as it is; anything
        else is converted to float64 first. The returned action is a new array every step.
        """
        t0 = _now()
        flat = obs if type(obs) is _ndarray and (obs.dtype is _F64 or obs.dtype is _F32) \
            else np.asarray(obs, dtype=np.float64)
        two_d = False
        if flat.ndim != 1:
            if flat.ndim == 2 and flat.shape[0] == 1:
                flat, two_d = flat[0], True
            elif flat.ndim == 0:
                flat = flat.reshape(1)
            else:
                raise ValueError(f"SafeRuntime.step takes one observation, got shape {flat.shape}")
        vals = flat.tolist()  # a copy as floats: the finite check and the sample-and-hold in one call
        obs_ok = _isfinite(sum(vals))
        if obs_ok:
            self._hold = vals
            base_in = flat
        else:
            base_in = self._repaired(vals)
        self.steps += 1
        if a_base is None:
            try:
                out = self.base(base_in[None])
            except Exception as e:
                out = self._base_fault(f"base raised {type(e).__name__}: {e}", e)
        else:
            out = a_base
        if type(out) is _ndarray and out.dtype is _F64 and out.shape == self._base_shape:
            a = out[0]  # the usual case (a BasePolicy's output): a view, no copy
        else:
            a = None if out is None else self._as_action(out)
        if a is not None:
            ab = a.tolist()
            if not _isfinite(sum(ab)):
                a = self._base_fault("base returned a non-finite action", None)
        if a is None:  # base fault, on_base_fault="hold"
            action = self._last_action.copy() if self._last_action is not None \
                else np.array(clamp(self._zero, self.low, self.high))
            self._prev = self._delta = self._zero
            self.last_cause = "base_fault"
        elif not self.enabled:
            if self.kind == "base":
                action = self._base_action(ab, "base")
            else:
                action = self._base_action(ab, "disabled")
                self.disabled_steps += 1
        elif obs_ok:
            action = self._corrected(flat, a, ab)
        else:
            action = self._fallback(ab, "nan_obs")
        self._last_action = action
        self._add_step_latency(_now() - t0)
        return action[None] if two_d else action

    # ------------------------------------------------------------------ pieces of a step
    def _repaired(self, vals: list[float]) -> np.ndarray:
        hold = self._hold if self._hold is not None and len(self._hold) == len(vals) else [0.0] * len(vals)
        return np.array([v if _isfinite(v) else h for v, h in zip(vals, hold, strict=True)])

    def _as_action(self, out: Any) -> np.ndarray | None:
        """Anything the base (or the caller's ``a_base``) gave, as a float64 ``(k,)`` array, or a base fault."""
        try:
            a = np.asarray(out, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            return self._base_fault(f"base returned something that is not an action array: {e}", e)
        if a.shape[0] != self.k:
            return self._base_fault(f"base returned {a.shape[0]} action values, expected {self.k}", None)
        return a

    def _base_fault(self, msg: str, exc: BaseException | None) -> None:
        self.base_faults += 1
        self.last_error = msg
        if self.on_base_fault == "raise":
            raise BaseFault(msg) from exc
        return None

    def _base_action(self, ab: list[float], cause: str) -> np.ndarray:
        self._prev = self._delta = self._zero
        self.last_cause = cause
        return np.array(clamp(ab, self.low, self.high))

    def _fallback(self, ab: list[float], cause: str) -> np.ndarray:
        self.fallbacks[cause] += 1
        return self._base_action(ab, cause)

    def _corrected(self, flat: np.ndarray, a: np.ndarray, ab: list[float]) -> np.ndarray:
        t1 = _now()
        if self._worker is not None:
            status, out = self._worker.call(self.budget_us * 1e-6, flat.copy(), a)
        else:
            try:
                status, out = "ok", self.correction(flat, a)  # type: ignore[misc]
            except Exception as e:
                status, out = "error", e
        dt = _now() - t1
        self._add_correction_latency(dt)
        if status != "ok":
            if status == "error":
                self.last_error = f"{self.kind} raised {type(out).__name__}: {out}"
                return self._fallback(ab, "exception")
            return self._fallback(ab, "timeout")
        if dt > self._budget_ns:
            return self._fallback(ab, "timeout")
        if type(out) is _ndarray and out.ndim == 1 and out.dtype.kind == "f":
            u = out.tolist()
        else:
            try:
                u = np.asarray(out, dtype=np.float64).reshape(-1).tolist()
            except (TypeError, ValueError):
                return self._fallback(ab, "nan_output")
        if len(u) != self._out_dim or not _isfinite(sum(u)):
            return self._fallback(ab, "nan_output")
        if self._law is not None:
            act, delta, total, peak = self._law(ab, u, self._prev)
            self._prev = delta
        else:  # a student: its action, clamped
            act = clamp(u, self.low, self.high)
            delta = [x - y for x, y in zip(act, ab, strict=True)]
            mags = [abs(x) for x in delta]
            total, peak = sum(mags), max(mags, default=0.0)
        self._delta = delta
        self._abs_total += total
        if peak > self._abs_peak:
            self._abs_peak = peak
        self.corrected_steps += 1
        self.last_cause = "corrected"
        return np.array(act)

    # ------------------------------------------------------------------ report
    def _clear_counters(self, latency_window: int = 8192) -> None:
        self.steps = self.corrected_steps = self.disabled_steps = self.base_faults = 0
        self.fallbacks = dict.fromkeys(FALLBACK_CAUSES, 0)
        self._abs_total = 0.0  # sum of |delta| over every entry of every corrected step
        self._abs_peak = 0.0
        self.step_latency = LatencyWindow(latency_window)
        self.correction_latency = LatencyWindow(latency_window)
        self._add_step_latency = self.step_latency.add  # the per-step calls, bound once
        self._add_correction_latency = self.correction_latency.add
        self.last_error: str | None = None

    def reset_counters(self) -> None:
        self._clear_counters(self.step_latency.size)

    def health(self) -> HealthReport:
        n = self.corrected_steps
        details: dict[str, Any] = {"bounds": [self.low, self.high], "act_dim": self.k}
        if self._worker is not None:
            details["late_results_dropped"] = self._worker.late_results
        if self.arch is not None:
            details["alpha"], details["rate_limit"] = self.arch.alpha, self.arch.rate_limit
        return HealthReport(
            kind=self.kind, backend=self.backend, mode=self.mode, enabled=self.enabled, budget_us=self.budget_us,
            steps=self.steps, corrected_steps=n, disabled_steps=self.disabled_steps, fallbacks=dict(self.fallbacks),
            base_faults=self.base_faults,
            mean_abs_delta=self._abs_total / (n * self.k) if n else 0.0, max_abs_delta=self._abs_peak,
            latency_us={"step": self.step_latency.summary_us(), "correction": self.correction_latency.summary_us()},
            last_error=self.last_error, details=details,
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> SafeRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def combined_health(runtimes: list[SafeRuntime]) -> HealthReport:
    """One report over several runtimes (one per robot): counters summed, latencies pooled."""
    if not runtimes:
        raise ValueError("no runtimes to combine")
    first = runtimes[0].health()
    step_w = LatencyWindow.pooled([r.step_latency for r in runtimes])
    corr_w = LatencyWindow.pooled([r.correction_latency for r in runtimes])
    n = sum(r.corrected_steps for r in runtimes)
    k = first.details["act_dim"]
    abs_total = sum(r._abs_total for r in runtimes)
    fallbacks = {c: sum(r.fallbacks[c] for r in runtimes) for c in FALLBACK_CAUSES}
    errors = [r.last_error for r in runtimes if r.last_error]
    details = dict(first.details, runtimes=len(runtimes))
    return HealthReport(
        kind=first.kind, backend=first.backend, mode=first.mode, enabled=any(r.enabled for r in runtimes),
        budget_us=first.budget_us, steps=sum(r.steps for r in runtimes), corrected_steps=n,
        disabled_steps=sum(r.disabled_steps for r in runtimes), fallbacks=fallbacks,
        base_faults=sum(r.base_faults for r in runtimes),
        mean_abs_delta=abs_total / (n * k) if n else 0.0,
        max_abs_delta=max(r._abs_peak for r in runtimes),
        latency_us={"step": step_w.summary_us(), "correction": corr_w.summary_us()},
        last_error=errors[-1] if errors else None, details=details,
    )
