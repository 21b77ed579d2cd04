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

try:  # the ufunc behind np.clip, without np.clip's Python wrapper (which costs more than the clip here)
    from numpy._core.umath import clip as _clip
except ImportError:  # numpy < 2
    from numpy.core.umath import clip as _clip


if TYPE_CHECKING:  # the runtime itself imports no torch; building from a torch actor does
    from cadenza.residual.network import ResidualActor, ResidualArch


class NumpyResidual:
    """``(obs[d], a_base[k]) -> u[k (+1 gate)]``, the actor's mean action, in 7-8 numpy calls per step.

    Each numpy call costs about a microsecond whatever its size here, so the forward is built to make
    few of them, all in float32 (float64 ``tanh`` has no SIMD loop in numpy and costs 4-5 times the
    float32 one; float32 halves the memory traffic of the 256 x 256 layer, which is what the matrix
    products spend their time on):

    * The normaliser's clamp of ``(obs - mean) / std`` to ``[-c, c]`` equals clamping ``obs`` to
      ``[mean - c std, mean + c std]``; the affine ``(obs - mean) / std`` then folds into the first
      layer's weights and bias at load time, so normalising is one ``clip`` call. Folded, the first
      layer multiplies ``obs / std`` rather than ``(obs - mean) / std``; in float32 that rounds about
      ``|mean| / std / c`` times more than the centred form. Where some entry's mean lies more than
      ``c`` standard deviations from zero (a nearly constant sensor far from zero), the observation
      is centred in float64 first instead (two more calls), so the forward is never less exact than
      the centred computation by more than a factor of two.
    * Each layer's bias is one more weight row fed by a constant 1: a layer is one matvec (+ tanh).
    * Every buffer is allocated once; each call writes into them with ``out=``.

    The returned array is a buffer reused by the next call: read it (or copy it) before calling again.
    """

    backend = "numpy"

    def __init__(self, actor: ResidualActor, dtype: str = "float32") -> None:
        """``dtype``: of the weights and activations; ``"float64"`` is exact to torch's float64 actor
        but costs about 3x per step (kept for comparison in ``benchmarks/runtime_overhead.py``)."""
        arch: ResidualArch = actor.arch
        self.arch = arch
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dt = np.dtype(dtype)
        sd = {k: v.detach().cpu() for k, v in actor.state_dict().items()}
        d = arch.obs_dim
        # the normaliser from its float64 buffers (ObsNormalizer.forward's formula, without float32 rounding)
        mean = sd["norm.mean"].numpy().astype(np.float64)
        std = np.sqrt(sd["norm.var"].numpy().astype(np.float64) + 1e-8)
        clip = float(actor.norm.clip)
        self.folded = bool(np.all(np.abs(mean) <= clip * std))
        self._mean = mean
        if self.folded:  # clamp the raw observation; (obs - mean) / std lives in the weights
            self.obs_low, self.obs_high = mean - clip * std, mean + clip * std
        else:  # centre in float64, then clamp obs - mean; only / std lives in the weights
            self.obs_low, self.obs_high = -clip * std, clip * std
        self._low_dt, self._high_dt = self.obs_low.astype(dt), self.obs_high.astype(dt)
        linears = _linear_tanh_stack(actor)
        mats = []
        for i, m in enumerate(linears):
            w = m.weight.detach().cpu().numpy().astype(np.float64).T.copy()  # (in, out)
            b = m.bias.detach().cpu().numpy().astype(np.float64)
            if i == 0:
                if self.folded:
                    b = b - (mean / std) @ w[:d]
                w[:d] /= std[:, None]
            mats.append(np.ascontiguousarray(np.vstack([w, b[None, :]]), dtype=dt))
        self.weights = mats
        # x = [normalised obs, a_base, 1]; every layer's input ends in a constant 1 (its bias row)
        self.x = np.zeros(arch.input_dim + 1, dtype=dt)
        self.x[-1] = 1.0
        self._z = self.x[:d]  # views made once: slicing costs a call too
        self._b = self.x[d:arch.input_dim]
        self._z64 = np.zeros(d)  # float64 scratch for float64 observations
        self.out = np.zeros(mats[-1].shape[1], dtype=dt)
        # (weights, input, output view, tanh after?) per layer
        inputs = [self.x] + [np.ones(w.shape[0], dtype=dt) for w in mats[1:]]
        outputs = [h[:-1] for h in inputs[1:]] + [self.out]
        self._layers = [(w, inp, out, i < len(mats) - 1)
                        for i, (w, inp, out) in enumerate(zip(mats, inputs, outputs, strict=True))]
        self._two_hidden = (mats[0], inputs[1], outputs[0], mats[1], inputs[2], outputs[1], mats[2]) \
            if len(mats) == 3 else None

    def __call__(self, obs: np.ndarray, a_base: np.ndarray | None = None) -> np.ndarray:
        """``obs``: shape ``(d,)``, float32 or float64 (other dtypes are converted); ``a_base``: ``(k,)``."""
        z = self._z
        if obs.dtype is self.dtype and self.folded:  # one call, no conversion
            _clip(obs, self._low_dt, self._high_dt, z)
        else:
            z64 = self._z64
            if self.folded:
                _clip(obs, self.obs_low, self.obs_high, z64)
            else:
                np.subtract(obs, self._mean, z64)
                _clip(z64, self.obs_low, self.obs_high, z64)
            z[...] = z64
        if self.arch.use_base:
            self._b[...] = a_base
        if self._two_hidden is not None:  # the usual shape, written out: a loop costs more than its calls
            w0, h0, v0, w1, h1, v1, w2 = self._two_hidden
            np.dot(self.x, w0, v0)
            np.tanh(v0, v0)
            np.dot(h0, w1, v1)
            np.tanh(v1, v1)
            np.dot(h1, w2, self.out)
            return self.out
        for w, inp, out, act in self._layers:
            np.dot(inp, w, out)
            if act:
                np.tanh(out, out)
        return self.out

    def check_against(self, actor: ResidualActor, rows: int = 8, tol: float = 1e-4) -> float:
        """Largest difference from the torch actor run in float64 on random inputs; raises if above ``tol``.

        (The float32 layers differ from it by float32 rounding, about 1e-6; a mistake in the folding
        would differ by orders of magnitude more. Against torch's own float32 actor, inputs far from
        the normaliser's mean add torch's cancellation error on top.)
        """
        import copy

        import torch

        ref_actor = copy.deepcopy(actor).double().eval()
        rng = np.random.default_rng(0)
        mean = self._mean
        half = (self.obs_high - self.obs_low) / 2
        # inside and well outside the normaliser's clamp, in float64 and float32
        obs = mean + half * rng.normal(size=(rows, self.arch.obs_dim)) * 0.3
        obs[::2] *= 1.0 + 3.0 * rng.random((len(obs[::2]), 1))
        base = rng.uniform(-1, 1, size=(rows, self.arch.act_dim))
        with torch.inference_mode():
            ref = ref_actor(torch.as_tensor(obs), torch.as_tensor(base)).numpy()
            obs32 = obs.astype(np.float32)
            ref32 = ref_actor(torch.as_tensor(obs32.astype(np.float64)), torch.as_tensor(base)).numpy()
        err = max(max(float(np.abs(self(obs[i], base[i]) - ref[i]).max()),
                      float(np.abs(self(obs32[i], base[i]) - ref32[i]).max())) for i in range(rows))
        if not err <= tol:
            raise ValueError(f"numpy forward differs from the torch actor by {err:.3g} (> {tol})")
        return err

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "layers": [[w.shape[0] - 1, w.shape[1]] for w in self.weights],
                "dtype": str(self.dtype), "normaliser": "folded into the first layer" if self.folded
                else "centred in float64, scale folded into the first layer"}


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
