"""The student: a small MLP from observation to the final action, standalone.

The observation normaliser (mean, 1/std, clip) and the action bounds live inside the module, so the
exported graph needs nothing else: ``action = clamp(mlp(clip((obs - mean) * inv_std, -c, c)), low, high)``.
Layers are written as ``x @ w + b`` (weights stored input-major) so the ONNX export holds plain
``MatMul`` + ``Add`` nodes, which ONNX Runtime's dynamic quantization turns into int8 ``MatMulInteger``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import nn

FORMAT = "cadenza.student.v1"
Layer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (index, input, w, b) -> output
ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class StudentArch:
    obs_dim: int
    act_dim: int
    hidden_dim: int = 64
    layers: int = 2  # hidden layers
    activation: str = "tanh"
    low: float = -1.0  # action bounds, applied inside the network
    high: float = 1.0
    obs_clip: float = 10.0  # normalised observations are clipped to [-obs_clip, obs_clip]

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"student activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not self.low < self.high:
            raise ValueError(f"student action bounds must have low < high, got [{self.low}, {self.high}]")

    @property
    def widths(self) -> list[int]:
        return [self.obs_dim] + [self.hidden_dim] * self.layers + [self.act_dim]

    def param_count(self) -> int:
        w = self.widths
        return sum(a * b + b for a, b in pairwise(w))

    def as_dict(self) -> dict:
        return asdict(self)


class Student(nn.Module):
    """``obs[N, obs_dim] -> action[N, act_dim]`` within ``[low, high]``; see the module docstring."""

    def __init__(self, arch: StudentArch) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("obs_mean", torch.zeros(arch.obs_dim))
        self.register_buffer("obs_inv_std", torch.ones(arch.obs_dim))
        w = arch.widths
        self.n_layers = len(w) - 1
        for i, (a, b) in enumerate(pairwise(w)):
            bound = 1.0 / math.sqrt(a)  # torch's nn.Linear initialisation
            self.register_parameter(f"w{i}", nn.Parameter(torch.empty(a, b).uniform_(-bound, bound)))
            self.register_parameter(f"b{i}", nn.Parameter(torch.empty(b).uniform_(-bound, bound)))

    def weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"w{i}"), getattr(self, f"b{i}")) for i in range(self.n_layers)]

    @torch.no_grad()
    def set_normaliser(self, mean: np.ndarray, std: np.ndarray, ignore: list[int] | None = None) -> None:
        """Fix the normaliser from data (standard deviations below 1e-6 count as 1: constant inputs).

        Entries in ``ignore`` get scale 0: the network always sees 0 there, whatever the observation.
        """
        mean = np.array(mean, dtype=np.float64)
        inv = 1.0 / np.where(np.asarray(std) > 1e-6, std, 1.0)
        if ignore:
            mean[ignore], inv[ignore] = 0.0, 0.0
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_inv_std.copy_(torch.as_tensor(inv, dtype=torch.float32))

    def ignored_inputs(self) -> list[int]:
        return [int(i) for i in torch.nonzero(self.obs_inv_std == 0).flatten()]

    def raw(self, obs: torch.Tensor, layer: Layer | None = None) -> torch.Tensor:
        """The action before the bounds (what training fits). ``layer(i, h, w, b)`` replaces the affine
        map ``h @ w + b`` of layer ``i`` (``cadenza.distill.quant_aware`` rounds it as the int8 file does)."""
        c = self.arch.obs_clip
        h = ((obs - self.obs_mean) * self.obs_inv_std).clamp(-c, c)
        act = torch.tanh if self.arch.activation == "tanh" else torch.relu
        for i, (w, b) in enumerate(self.weights()):
            h = h @ w + b if layer is None else layer(i, h, w, b)
            if i < self.n_layers - 1:
                h = act(h)
        return h

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.raw(obs).clamp(self.arch.low, self.arch.high)

    def numpy_weights(self) -> dict[str, np.ndarray]:
        """Every tensor the student needs, as float32 arrays (the safetensors / numpy layout)."""
        out = {"obs_mean": self.obs_mean, "obs_inv_std": self.obs_inv_std}
        for i, (w, b) in enumerate(self.weights()):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return {k: v.detach().cpu().float().numpy().copy() for k, v in out.items()}

    @classmethod
    def from_numpy(cls, arch: StudentArch, tensors: dict[str, np.ndarray]) -> Student:
        s = cls(arch)
        with torch.no_grad():
            for name, value in tensors.items():
                target = getattr(s, name, None)
                if not isinstance(target, torch.Tensor) or tuple(target.shape) != tuple(value.shape):
                    raise ValueError(f"tensor {name!r} {tuple(value.shape)} does not fit the architecture")
                target.copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
        missing = set(s.numpy_weights()) - set(tensors)
        if missing:
            raise ValueError(f"missing tensors: {', '.join(sorted(missing))}")
        return s.eval()
