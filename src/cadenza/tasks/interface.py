"""What every task (proxy, MuJoCo, user-supplied) offers to the rest of cadenza.

A task is a batched environment following the Gymnasium vector API with *same-step* autoreset:
when an env finishes, ``step`` already returns the first observation of its next episode and puts
the last observation in ``info["final_obs"]``. ``info`` always carries boolean arrays ``success``
and ``collision`` of shape ``(num_envs,)``; they refer to the step that just happened (so they
describe the episode that ended when ``terminated | truncated``).

Actions (every built-in task, batched or single env): finite values outside the action ``Box`` are
clipped to it; a NaN or an infinite component is refused with a ``ValueError`` that names the env
and the offending components, raised before anything changes (no state, no random draw, no
step count moves), so the caller can drop the bad action and go on. See :func:`check_finite`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium.vector import VectorEnv


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about a task that the governor, the residual and the reports need."""

    name: str
    label: str  # "proxy" or "mujoco:<task>" -- printed next to every number
    obs_dim: int
    act_dim: int
    horizon: int  # max steps per episode
    control_hz: float
    action_low: float = -1.0
    action_high: float = 1.0


def check_finite(actions: np.ndarray, env: str) -> None:
    """Raise a ``ValueError`` naming ``env`` and the non-finite components of ``actions``.

    One pass over the actions (about 2-3 us for 1 to 1024 envs of 3 components); the offending
    components are only looked for once it has failed.
    """
    if np.isfinite(actions).all():
        return
    bad = np.argwhere(~np.isfinite(actions))
    index = "(env, component)" if actions.ndim == 2 else "component"
    where = ", ".join(f"{tuple(int(x) for x in b) if len(b) > 1 else int(b[0])}: {actions[tuple(b)]}"
                      for b in bad[:6])
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    raise ValueError(f"{env}: non-finite action at {index} {where}{more}; actions must be finite (values outside "
                     "the action box are clipped, NaN and inf are refused); nothing was stepped")


@runtime_checkable
class Task(Protocol):
    """A batched task: ``reset(seed) -> obs, info`` and ``step(actions) -> obs, r, term, trunc, info``."""

    spec: TaskSpec
    num_envs: int

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]: ...

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]: ...

    def set_level(self, level: float) -> None:
        """Set the perturbation (curriculum) level in [0, 1]; applies from the next episode on."""
        ...

    @property
    def level(self) -> float: ...

    def close(self) -> None: ...


class BatchedTaskBase(VectorEnv):
    """What every built-in batched task shares: the ``spec`` it was built with and the curriculum level.

    Subclasses set ``self.spec_`` (a :class:`TaskSpec`) and call ``self.set_level(level)`` in ``__init__``.

    ``spec`` is the task's :class:`TaskSpec`. Gymnasium's ``make_vec`` assigns its own
    :class:`gymnasium.envs.registration.EnvSpec` to ``env.spec``; that write is kept in ``gym_spec``
    (``None`` until then) rather than replacing the task's spec.
    """

    spec_: TaskSpec
    gym_spec: Any = None
    _level: float = 0.0

    @property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        return self.spec_

    @spec.setter
    def spec(self, value: Any) -> None:
        self.gym_spec = value

    @property
    def level(self) -> float:
        return self._level

    def set_level(self, level: float) -> None:
        if not 0.0 <= float(level) <= 1.0:
            raise ValueError(f"perturbation level must be in [0, 1], got {level}")
        self._level = float(level)
