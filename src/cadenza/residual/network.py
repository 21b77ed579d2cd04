"""The residual head, its critic and the observation normaliser (all plain torch modules).

The actor reads ``[normalised obs, a_base]`` and outputs the mean of a Gaussian over the raw residual
action ``u``: ``k`` residual components (``delta = clip(u[:k], -1, 1)``) and, with the gate on, one
gate component (``gate = clip(u[k], 0, 1)``). The last layer starts near zero (std 0.01) so the first
policy is the base; the gate's bias starts at 1 (fully open). The normaliser lives inside the actor
as buffers, so it is saved, loaded and exported with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ResidualArch:
    obs_dim: int
    act_dim: int
    hidden_dim: int = 256
    layers: int = 2
    gate: bool = True
    alpha: float = 0.15
    rate_limit: float = 0.5
    use_base: bool = True  # False: a full policy from scratch (the bench's "full" arm)

    @property
    def input_dim(self) -> int:
        return self.obs_dim + (self.act_dim if self.use_base else 0)

    @property
    def out_dim(self) -> int:
        return self.act_dim + (1 if self.gate else 0)

    def as_dict(self) -> dict:
        return asdict(self)


class ObsNormalizer(nn.Module):
    """Running mean / variance (Welford over batches); frozen when not training."""

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(x, dtype=torch.float64, device=self.mean.device).reshape(-1, self.mean.shape[0])
        b_mean, b_var, b_n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b_n
        self.mean += delta * b_n / total
        self.var.copy_((self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / total) / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self.mean.to(x.dtype), torch.sqrt(self.var.to(x.dtype) + 1e-8)
        return ((x - m) / s).clamp(-self.clip, self.clip)


def _mlp(inp: int, hidden: int, out: int, layers: int, out_std: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers):
        lin = nn.Linear(d, hidden)
        nn.init.orthogonal_(lin.weight, np.sqrt(2))
        nn.init.zeros_(lin.bias)
        mods += [lin, nn.Tanh()]
        d = hidden
    head = nn.Linear(d, out)
    nn.init.orthogonal_(head.weight, out_std)
    nn.init.zeros_(head.bias)
    mods.append(head)
    return nn.Sequential(*mods)


class ResidualActor(nn.Module):
    """``(obs, a_base) -> mean of u``; plus a state-independent log std for exploration."""

    def __init__(self, arch: ResidualArch, init_log_std: float = -1.0) -> None:
        super().__init__()
        self.arch = arch
        self.norm = ObsNormalizer(arch.obs_dim)
        self.net = _mlp(arch.input_dim, arch.hidden_dim, arch.out_dim, arch.layers, out_std=0.01)
        if arch.gate:
            with torch.no_grad():
                self.net[-1].bias[-1] = 1.0
        self.log_std = nn.Parameter(torch.full((arch.out_dim,), init_log_std))

    def features(self, obs: torch.Tensor, a_base: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(obs)
        if self.arch.use_base:
            x = torch.cat([x, a_base.to(x.dtype)], dim=-1)
        return x

    def forward(self, obs: torch.Tensor, a_base: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.features(obs, a_base))

    def split(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw action ``u`` -> (delta in [-1, 1], gate in [0, 1] or None)."""
        k = self.arch.act_dim
        delta = u[..., :k].clamp(-1.0, 1.0)
        gate = u[..., k:].clamp(0.0, 1.0) if self.arch.gate else None
        return delta, gate


class Critic(nn.Module):
    """Value network; reads the actor's features (normalised obs and base action)."""

    def __init__(self, arch: ResidualArch) -> None:
        super().__init__()
        self.net = _mlp(arch.input_dim, arch.hidden_dim, 1, arch.layers, out_std=1.0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
