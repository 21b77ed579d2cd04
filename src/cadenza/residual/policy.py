"""Residual policy files and the controller that runs base + residual through the control law.

A policy file is a ``torch.save`` of plain data (architecture dict, actor state dict, metadata) and
loads with ``weights_only=True``: loading never runs foreign code. The observation normaliser is in
the actor's state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.errors import ArtefactError
from cadenza.residual.control_law import control_law
from cadenza.residual.network import ResidualActor, ResidualArch

FORMAT = "cadenza.residual.v1"


def save_policy(actor: ResidualActor, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    from cadenza.utils.io import atomic_write_with

    payload = {"format": FORMAT, "arch": actor.arch.as_dict(),
               "actor": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
               "meta": meta or {}}
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def load_policy(path: str | Path, device: str = "cpu") -> tuple[ResidualActor, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path}: no such residual policy file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise ArtefactError(f"{path}: not a loadable residual policy ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a cadenza residual policy (expected format {FORMAT})")
    try:
        arch = ResidualArch(**payload["arch"])
        actor = ResidualActor(arch)
        actor.load_state_dict(payload["actor"])
    except Exception as e:
        raise ArtefactError(f"{path}: residual policy does not match its architecture: {str(e)[:160]}") from None
    return actor.to(device).eval(), payload.get("meta", {})


class ResidualController:
    """Base + residual for N envs, one control step at a time (deterministic: the mean action).

    ``act(obs, a_base)`` returns the final action after the control law; the rate-limit state is
    kept per env and cleared with ``reset(mask)`` when an episode ends.
    """

    def __init__(self, actor: ResidualActor, version: str = "unregistered", meta: dict[str, Any] | None = None) -> None:
        self.actor = actor.eval()
        self.arch = actor.arch
        self.version = version
        self.meta = meta or {}  # what the policy file says of its training (task label, steps, seed, ...)
        self._prev: np.ndarray | None = None
        self.last_delta: np.ndarray | None = None  # gate * delta after the rate limit, for sanity metrics

    def reset(self, mask: np.ndarray | None = None) -> None:
        if self._prev is None or mask is None:
            self._prev = None
        else:
            self._prev[mask] = 0.0

    @torch.inference_mode()
    def raw(self, obs: np.ndarray, a_base: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        dev = self.actor.log_std.device  # the actor may live on an accelerator; the env's arrays are on the CPU
        u = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=dev),
                       torch.as_tensor(a_base, dtype=torch.float32, device=dev)).cpu().numpy().astype(np.float64)
        k = self.arch.act_dim
        return u[:, :k], (u[:, k:] if self.arch.gate else None)

    def act(self, obs: np.ndarray, a_base: np.ndarray) -> np.ndarray:
        delta, gate = self.raw(obs, a_base)
        if self._prev is None or self._prev.shape != delta.shape:
            self._prev = np.zeros_like(delta)
        out = control_law(a_base, delta, alpha=self.arch.alpha, gate=gate, prev_delta=self._prev,
                          rate_limit=self.arch.rate_limit)
        self._prev = out.delta
        self.last_delta = out.delta
        return out.action


def load_promoted_residual(project: Any, device: str = "cpu") -> ResidualController | None:
    """The project's promoted residual (hash-verified through the registry), or None if there is none."""
    from cadenza.governance.registry import open_registry

    reg = open_registry(project)
    version = reg.baseline("residual")
    if version is None:
        return None
    actor, meta = load_policy(reg.path("residual", version, "policy.pt"), device)
    return ResidualController(actor, version, meta)
