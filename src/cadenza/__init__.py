"""cadenza: learn a small bounded residual on a frozen base policy, govern it, prove it, distill it."""

from __future__ import annotations

__version__ = "0.1.0"

from cadenza.tasks.registration import register_gymnasium_envs as _register

_register()
