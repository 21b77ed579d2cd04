"""Apply the per-workload decisions: bf16 autocast around a block, torch.compile on a module.

    settings = configure(device, workload=Workload("ppo_update", params, batch=2048, expected_calls=1000))
    actor.net = maybe_compile(actor.net, settings, name="actor", batch=2048, expected_calls=1000,
                              example_inputs=(x,))
    with autocast(settings):
        loss = ...

Both record what they did in ``settings`` (``bf16_autocast`` and ``compile[name]`` with the reason).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from cadenza.accel.decisions import Workload, compile_blocker, decide_compile
from cadenza.accel.device import AccelSettings, hardware


def autocast(settings: AccelSettings | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` in bf16 where ``settings`` chose it, otherwise (or with None) a no-op context."""
    if settings is None or not settings.bf16_autocast:
        return nullcontext()
    import torch

    return torch.autocast(device_type=settings.device, dtype=torch.bfloat16)


def _eager_call_s(module: Any, example_inputs: Sequence[Any], device: str, training: bool) -> float:
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        module(*example_inputs)  # warm-up (allocator, lazy init)
        sync()
        reps = 3
        t0 = time.perf_counter()
        for _ in range(reps):
            module(*example_inputs)
        sync()
        fwd = (time.perf_counter() - t0) / reps
    return fwd * (3.0 if training else 1.0)  # backward costs about two forwards


def maybe_compile(module: Any, settings: AccelSettings, *, name: str, batch: int, expected_calls: int,
                  training: bool = True, example_inputs: Sequence[Any] | None = None,
                  env: Mapping[str, str] | None = None) -> Any:
    """``torch.compile(module)`` when it pays off here, else ``module`` itself; the reason goes in ``settings``.

    ``example_inputs`` (one batch of real inputs) lets the rule time an eager call and weigh the
    run's length against the first-call cost; without it compile is skipped as "run length unknown".
    """
    env = os.environ if env is None else env
    hw = hardware(settings.device)
    params = sum(p.numel() for p in module.parameters())
    wl = Workload(name=name, params=params, batch=batch, expected_calls=expected_calls, training=training)
    choice = compile_blocker(hw, wl, env)
    eager = None
    if choice is None:
        if example_inputs is not None:
            eager = _eager_call_s(module, example_inputs, settings.device, training)
        choice = decide_compile(hw, wl, env, eager)
    settings.compile[name] = {"applied": bool(choice.value), "reason": choice.reason, "batch": batch,
                              "expected_calls": expected_calls, "eager_call_ms": None if eager is None else eager * 1e3}
    if not choice.value:
        return module
    import torch

    return torch.compile(module)
