"""The residual actor's forward pass in numpy, for one observation at a time.

Why not torch on the per-step path: a torch call carries a fixed dispatch cost per op (the
rescue-dog actor is 9 ops: normalise, clamp, concat, 3 linear layers, 2 tanh), which is several
times the arithmetic of a 256-wide MLP on one row. The same weights in numpy, with buffers reused
from step to step, cost a fraction of that (measured in ``benchmarks/runtime_overhead.py``). The
weights are copied out of the :class:`~cadenza.residual.network.ResidualActor` state dict, so the
numpy forward is the trained actor (checked against torch in the tests); the normaliser's mean and
variance are part of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the runtime itself imports no torch; building from a torch actor does
    from cadenza.residual.network import ResidualActor, ResidualArch


class NumpyResidual:
    """``(obs[d], a_base[k]) -> u[k (+1 gate)]``, the actor's mean action, with few numpy calls per step.

    * The normaliser's clamp of ``(obs - mean) / std`` to ``[-c, c]`` equals clamping ``obs`` to
      ``[mean - c std, mean + c std]`` first; the affine ``(obs - mean) / std`` then folds into the
      first layer, which stays float64 so the fold loses nothing even for large offsets.
    * Each layer's bias is one more weight row fed by a constant 1: a layer is one matvec (+ tanh).
    * The later layers are float32, like torch: half the memory traffic of float64 (a 256 x 256
      layer is 256 KB), which matters when the control loop evicts the weights from cache.

    The returned array is a buffer reused by the next call: read it (or copy it) before calling again.
    """

    backend = "numpy"

    def __init__(self, actor: ResidualActor) -> None:
        arch: ResidualArch = actor.arch
        self.arch = arch
        sd = {k: v.detach().cpu() for k, v in actor.state_dict().items()}
        d = arch.obs_dim
        # the normaliser from its float64 buffers (ObsNormalizer.forward's formula, without float32 rounding)
        mean = sd["norm.mean"].numpy().astype(np.float64)
        std = np.sqrt(sd["norm.var"].numpy().astype(np.float64) + 1e-8)
        clip = float(actor.norm.clip)
        self.obs_low, self.obs_high = mean - clip * std, mean + clip * std
        linears = _linear_tanh_stack(actor)
        mats = []
        for i, m in enumerate(linears):
            w = m.weight.detach().cpu().numpy().astype(np.float64).T.copy()  # (in, out)
            b = m.bias.detach().cpu().numpy().astype(np.float64)
            if i == 0:  # fold (x - mean) / std into the observation rows of the first layer
                b = b - (mean / std) @ w[:d]
                w[:d] /= std[:, None]
            mats.append(np.ascontiguousarray(np.vstack([w, b[None, :]]).astype(np.float64 if i == 0 else np.float32)))
        self.weights = mats
        self.x = np.zeros(arch.input_dim + 1)  # [clamped obs, a_base, 1], float64
        self.x[-1] = 1.0
        self._z = self.x[:d]  # views made once: slicing costs a call too
        self._b = self.x[d:arch.input_dim]
        self._t0 = np.zeros(mats[0].shape[1])  # first layer's pre-activation, float64
        dt = mats[0].dtype if len(mats) == 1 else np.float32
        self.out = np.zeros(mats[-1].shape[1], dtype=dt)
        # hidden activations (float32, with the constant 1 appended) and the layers reading them
        self.hidden = [np.ones(w.shape[0], dtype=np.float32) for w in mats[1:]]
        self._hidden_views = [h[:-1] for h in self.hidden]
        self._later = list(zip(mats[1:], [*self._hidden_views[1:], self.out], strict=True)) if self.hidden else []

    def __call__(self, obs: np.ndarray, a_base: np.ndarray | None = None) -> np.ndarray:
        z = self._z
        np.minimum(obs, self.obs_high, out=z)
        np.maximum(z, self.obs_low, out=z)
        if self.arch.use_base:
            self._b[...] = a_base
        if not self.hidden:  # a single linear layer
            np.dot(self.x, self.weights[0], out=self.out)
            return self.out
        np.dot(self.x, self.weights[0], out=self._t0)
        np.tanh(self._t0, out=self._hidden_views[0])  # float64 -> float32
        h = self.hidden[0]
        for i, (w, target) in enumerate(self._later):
            np.dot(h, w, out=target)
            if target is self.out:
                break
            np.tanh(target, out=target)
            h = self.hidden[i + 1]
        return self.out

    def check_against(self, actor: ResidualActor, rows: int = 8, tol: float = 1e-4) -> float:
        """Largest difference from the torch actor run in float64 on random inputs; raises if above ``tol``.

        (The float32 later layers differ from it by float32 rounding, about 1e-6; a mistake in the
        folding would differ by orders of magnitude more. Against torch's own float32 actor, inputs
        far from the normaliser's mean add torch's cancellation error on top.)
        """
        import copy

        import torch

        ref_actor = copy.deepcopy(actor).double().eval()
        rng = np.random.default_rng(0)
        mean = (self.obs_low + self.obs_high) / 2
        half = (self.obs_high - self.obs_low) / 2
        # inside and well outside the normaliser's clamp
        obs = mean + half * rng.normal(size=(rows, self.arch.obs_dim)) * 0.3
        obs[::2] *= 1.0 + 3.0 * rng.random((len(obs[::2]), 1))
        base = rng.uniform(-1, 1, size=(rows, self.arch.act_dim))
        with torch.inference_mode():
            ref = ref_actor(torch.as_tensor(obs), torch.as_tensor(base)).numpy()
        err = max(float(np.abs(self(obs[i], base[i]) - ref[i]).max()) for i in range(rows))
        if not err <= tol:
            raise ValueError(f"numpy forward differs from the torch actor by {err:.3g} (> {tol})")
        return err

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "layers": [[w.shape[0] - 1, w.shape[1]] for w in self.weights],
                "dtype": "first layer float64 (normaliser folded in), later layers float32"}


def _linear_tanh_stack(actor: ResidualActor) -> list[Any]:
    """The actor's Linear layers, after checking the net is Linear (Tanh Linear)* as numpy mirrors it."""
    from torch import nn

    mods = list(actor.net)
    ok = bool(mods) and len(mods) % 2 == 1 and all(
        isinstance(m, nn.Linear if i % 2 == 0 else nn.Tanh) for i, m in enumerate(mods))
    if not ok:
        raise ValueError("the actor is not a Linear/Tanh stack; use the torch backend")
    return mods[0::2]


class TorchResidual:
    """The same call on the torch actor (for comparison and for actors numpy cannot mirror)."""

    backend = "torch"

    def __init__(self, actor: ResidualActor) -> None:
        import torch

        self.arch = actor.arch
        self.actor = actor.eval()
        self._torch = torch

    def __call__(self, obs: np.ndarray, a_base: np.ndarray | None = None) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            o = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            b = torch.as_tensor(a_base, dtype=torch.float32).reshape(1, -1) if a_base is not None else None
            return self.actor(o, b).numpy().reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend}
