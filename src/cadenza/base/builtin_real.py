"""Built-in bases for the real-simulator tasks, looked up by ``builtin:<name>`` in the base loader.

Each entry is a zero-argument factory returning a callable ``obs[N, d] -> a_base[N, k]``. The bases
are plain numpy; only the tasks they drive need MuJoCo.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _reacher_pd() -> Callable[[np.ndarray], np.ndarray]:
    from cadenza.base.reacher_pd import ReacherPD

    return ReacherPD()


def _rescue_dog_gait() -> Callable[[np.ndarray], np.ndarray]:
    from cadenza.base.quadruped_gait import QuadrupedGait

    return QuadrupedGait()


BUILTINS: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    "reacher-pd": _reacher_pd,
    "rescue-dog-gait": _rescue_dog_gait,
}
