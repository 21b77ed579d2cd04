"""A tiny custom goal encoder for the LoRA head: copy this file beside a project's ``cadenza.toml``.

It proves the ``lora_encoder.py`` path (docs/lora.md, "Bring your own encoder"): a project whose own
base or VLA has a text tower ships a file like this one, and ``cadenza env lora finetune`` adapts
that tower with LoRA instead of MiniLM. The interface:

* ``build_encoder() -> torch.nn.Module`` with
* ``dim`` (int): the size of the sentence vector;
* ``lora_targets`` (list of str): the names of the ``torch.nn.Linear`` layers LoRA adapts;
* ``forward(texts: list[str]) -> torch.Tensor`` of shape ``(len(texts), dim)``.

This one hashes words and word pairs into 512 buckets (a fixed, seeded table: no download, no
training of its own), then two Linear layers. It is deliberately small; MiniLM understands far more.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import ClassVar

import torch
from torch import nn

BUCKETS = 512


def _bucket(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:4], "little") % BUCKETS


class HashedBagEncoder(nn.Module):
    name = "hashed-bag-of-words (examples/lora-encoder)"
    dim = 64
    lora_targets: ClassVar[list[str]] = ["proj", "mix"]

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(BUCKETS, 128)
        self.mix = nn.Linear(128, self.dim)
        with torch.no_grad():
            for layer in (self.proj, self.mix):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
                layer.bias.zero_()

    def forward(self, texts: list[str]) -> torch.Tensor:
        x = torch.zeros(len(texts), BUCKETS)
        for i, t in enumerate(texts):
            words = re.findall(r"[a-z']+", t.lower())
            for tok in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                x[i, _bucket(tok)] += 1.0
        h = torch.tanh(self.proj(x))
        return nn.functional.normalize(self.mix(h), dim=-1)


def build_encoder() -> nn.Module:
    return HashedBagEncoder()
