"""The one base + residual combinator (torch-free: any residual with ``act(obs, a_base)`` and ``reset(mask)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class BasePlusResidual:
    """The one base + residual combinator for one or many envs (the DAgger teacher, the mission controller).

    ``act(obs)`` calls the frozen base, then runs the residual on its action through the control law
    (:meth:`ResidualController.act`); without a residual it is the base alone. ``act(obs, weight)``
    applies only ``weight`` of the residual's correction, ``a_base + weight * (a - a_base)`` (a mission
    skill sets the weight from its phase; 0 runs the base alone). The onboard runtime
    (:class:`cadenza.runtime.safe.SafeRuntime`) composes the same law without torch, on its own path.
    """

    def __init__(self, base: Callable[[np.ndarray], np.ndarray], residual: Any = None) -> None:
        """``residual``: a :class:`cadenza.residual.policy.ResidualController` (or anything with its
        ``act(obs, a_base)`` and ``reset(mask)``), or None for the base alone."""
        self.base, self.residual = base, residual

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self.residual is not None:
            self.residual.reset(mask)

    def act(self, obs: np.ndarray, weight: float | None = None) -> np.ndarray:
        a_base = self.base(obs)
        if self.residual is None:
            return a_base
        a = self.residual.act(obs, a_base)
        if weight is None:
            return a
        return a_base + weight * (np.asarray(a, dtype=np.float64) - a_base)
