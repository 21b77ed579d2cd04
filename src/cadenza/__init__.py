"""cadenza: learn a small bounded residual on a frozen base policy, govern it, prove it, distill it."""

from __future__ import annotations

__version__ = "0.1.0"

from cadenza.tasks.episodes import register_episodes as _register_episodes
from cadenza.tasks.registration import register_gymnasium_envs as _register

_register()
# The mission layer's whole missions as training episodes (imported on first use, so tasks/ never imports it).
_register_episodes("proxy:rescue-dog", "mission", "cadenza.mission.task:make_mission_task")
