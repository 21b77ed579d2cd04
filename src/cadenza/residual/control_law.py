"""The control law: the one place where base action and residual meet.

    delta_eff_t = clip(gate * delta, delta_eff_{t-1} - rate_limit, delta_eff_{t-1} + rate_limit)
    a           = clamp(a_base + alpha * delta_eff_t, low, high)

``delta`` is the residual head's output in [-1, 1] per action dimension and ``gate`` its optional
scalar in [0, 1] (``None`` means no gate, i.e. ``--no-gate``). The rate limit acts on the residual
term the robot actually feels (``gate * delta``), so neither the gate nor the head can jump by more
than ``rate_limit`` between two control steps. The base action is taken as a constant: in torch it
is detached, so no gradient ever reaches the base.

Works on numpy arrays and torch tensors alike; it is the same function in training, evaluation and
the distillation teacher. The safe runtime's per-step path uses
:func:`cadenza.runtime.fast_law.make_law`, the same operations in the same order on Python floats for
one robot (equal to this function bit for bit on finite float64 inputs, and tested for it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class ControlOutput(NamedTuple):
    action: Any  # final action sent to the robot, within [low, high]
    delta: Any  # the rate-limited residual term (gate * delta), before alpha; carry it to the next step


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def control_law(
    a_base: Any,
    delta: Any,
    *,
    alpha: float,
    gate: Any | None = None,
    prev_delta: Any | None = None,
    rate_limit: float | None = None,
    low: float = -1.0,
    high: float = 1.0,
) -> ControlOutput:
    """Combine a frozen base action with a bounded residual; see the module docstring."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if _is_torch(delta):
        import torch

        a_base = a_base.detach() if _is_torch(a_base) else torch.as_tensor(a_base, dtype=delta.dtype)
        d = delta.clamp(-1.0, 1.0)
        if gate is not None:
            d = d * gate.clamp(0.0, 1.0)
        if rate_limit is not None and prev_delta is not None:
            prev = prev_delta.detach() if _is_torch(prev_delta) else torch.as_tensor(prev_delta, dtype=d.dtype)
            d = torch.minimum(torch.maximum(d, prev - rate_limit), prev + rate_limit)
        return ControlOutput((a_base + alpha * d).clamp(low, high), d)

    # np.minimum(np.maximum(x, lo), hi) is np.clip(x, lo, hi) (NaN included) without np.clip's Python
    # wrapper, which costs more than the arithmetic for one robot's few actions (the safe runtime's step)
    d = np.minimum(np.maximum(delta, -1.0), 1.0)
    if gate is not None:
        d = d * np.minimum(np.maximum(gate, 0.0), 1.0)
    if rate_limit is not None and prev_delta is not None:
        d = np.minimum(np.maximum(d, prev_delta - rate_limit), prev_delta + rate_limit)
    return ControlOutput(np.minimum(np.maximum(a_base + alpha * d, low), high), d)
