"""The 8-bit scheme of the exported student, and its torch mirror for quantisation-aware fine-tuning.

The int8 export (``cadenza.distill.export.quantize_int8``) is ONNX Runtime's dynamic quantization:

* **weights**: unsigned 8-bit, asymmetric (``scale = (max(w, 0) - min(w, 0)) / 255``, zero point
  ``round(-min(w, 0) / scale)``); one scale per output channel on the first and the last layer, one
  for the whole matrix on the hidden-to-hidden layers (:func:`per_channel_layer`);
* **activations**: each ``MatMul`` input goes through ``DynamicQuantizeLinear``: unsigned 8-bit with
  a scale computed over the whole input tensor at every call (the runtime feeds one observation per
  call, so: one scale per observation);
* ``MatMulInteger`` then multiplies the integers exactly; biases, the normaliser, ``tanh`` and the
  bounds stay fp32.

:func:`quantized_raw` computes the same thing in torch (rounding as ONNX Runtime does, round half to
even), with straight-through gradients, so training can see the rounding the robot will run. On the
rescue-dog student it matches the exported file to about 1e-6 (tests/test_quant_aware.py).

Why fine-tune at all: a student trained in fp32 alone lost about one point of success to the
rounding in closed loop (rescue-dog demo, 3,000 paired episodes: gap to the teacher 0.9 points in
fp32, 1.9 in int8), enough to leave the int8 gap check undecided against a 3-point limit. Ten
epochs on ``mse(fp32) + mse(int8 mirror)`` brought the int8 gap to 0.6 points with the fp32 gap
unchanged (docs/distill.md has the table). Fine-tuning on the int8 loss alone cost the fp32 student
success (1.5 points), hence the sum.
"""

from __future__ import annotations

import torch

LEVELS = 255.0  # 8-bit unsigned: 0 .. 255


def per_channel_layer(index: int, n_layers: int) -> bool:
    """Whether layer ``index`` of ``n_layers`` gets one weight scale per output channel (first and last
    layer) rather than one per matrix."""
    return index == 0 or index == n_layers - 1


def _fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Asymmetric unsigned 8-bit quantise-dequantise of ``x`` with range ``[lo, hi]`` (which holds 0);
    the gradient passes straight through."""
    scale = ((hi - lo) / LEVELS).clamp_min(torch.finfo(x.dtype).tiny)
    zero = torch.round(-lo / scale).clamp(0.0, LEVELS)
    q = (torch.clamp(torch.round(x / scale) + zero, 0.0, LEVELS) - zero) * scale
    return x + (q - x).detach()


def fake_quant_activation(h: torch.Tensor) -> torch.Tensor:
    """``DynamicQuantizeLinear`` on each row of ``h [N, d]`` (one observation per call)."""
    lo = h.detach().amin(dim=1, keepdim=True).clamp(max=0.0)
    hi = h.detach().amax(dim=1, keepdim=True).clamp(min=0.0)
    return _fake_quant(h, lo, hi)


def fake_quant_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The 8-bit weight of ``w [in, out]`` (input-major), one scale per output column or per matrix."""
    if per_channel:
        lo = w.detach().amin(dim=0, keepdim=True).clamp(max=0.0)
        hi = w.detach().amax(dim=0, keepdim=True).clamp(min=0.0)
    else:
        lo, hi = w.detach().min().clamp(max=0.0), w.detach().max().clamp(min=0.0)
    return _fake_quant(w, lo, hi)


def quantized_raw(student: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The student's unbounded output as its int8 export computes it (``Student.raw`` with the rounding)."""
    n = student.n_layers

    def int8_layer(i: int, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fake_quant_activation(h) @ fake_quant_weight(w, per_channel_layer(i, n)) + b

    return student.raw(obs, layer=int8_layer)


def quantized(student: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The bounded action of the int8 mirror."""
    return quantized_raw(student, obs).clamp(student.arch.low, student.arch.high)
