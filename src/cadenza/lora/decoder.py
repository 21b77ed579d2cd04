"""The plan decoder: goal vector + observation + previous step -> a plan, constrained by construction.

Architecture (small, CPU-friendly):

* the goal vector (the encoder's sentence embedding) goes through ``Linear -> tanh`` to a goal code;
* an MLP of [goal code, observation features, previous step] gives the first hidden state, from
  which the first step is read; a GRU cell then takes each decoded step (and the goal code) to the
  next hidden state, autoregressively;
* each hidden state gives logits over the vocabulary's actions plus END, and one position in
  [0, 1] per (action, parameter) slot (a sigmoid).

**Constrained by construction**: the action is the arg-max over the vocabulary's actions only (END
is not allowed as the first step), a parameter is ``lo + u * (hi - lo)`` with ``u`` in [0, 1]
(rounded to 0.01, clamped), and the loop stops at ``max_len`` steps. Nothing the weights hold can
make a decoded step fail :meth:`cadenza.mission.actions.Vocabulary.check`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cadenza.lora.features import OBS_DIM, StepCodec
from cadenza.mission.actions import ActionStep


@dataclass(frozen=True)
class DecoderConfig:
    goal_dim: int
    code_dim: int = 64
    hidden: int = 256

    def as_dict(self) -> dict[str, int]:
        return {"goal_dim": self.goal_dim, "code_dim": self.code_dim, "hidden": self.hidden}


class PlanDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig, codec: StepCodec) -> None:
        super().__init__()
        self.cfg, self.codec = cfg, codec
        s = codec.step_dim
        self.goal = nn.Linear(cfg.goal_dim, cfg.code_dim)
        self.start = nn.Sequential(nn.Linear(cfg.code_dim + OBS_DIM + s, cfg.hidden), nn.ReLU(),
                                   nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                   nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh())
        self.cell = nn.GRUCell(s + cfg.code_dim, cfg.hidden)
        self.action = nn.Linear(cfg.hidden, codec.n_actions + 1)
        self.param = nn.Linear(cfg.hidden, max(codec.n_slots, 1))

    def initial(self, goal_vec: torch.Tensor, obs: torch.Tensor,
                prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = torch.tanh(self.goal(goal_vec))
        return code, self.start(torch.cat([code, obs, prev], dim=-1))

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.action(h), torch.sigmoid(self.param(h))[..., : self.codec.n_slots]

    def forward(self, goal_vec: torch.Tensor, obs: torch.Tensor, prev: torch.Tensor,
                inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: ``inputs[:, t]`` is the encoding of target step ``t`` (fed to reach ``t + 1``).
        Returns action logits ``(B, L, A + 1)`` and slot positions ``(B, L, n_slots)``."""
        code, h = self.initial(goal_vec, obs, prev)
        logits, pos = [], []
        for t in range(inputs.shape[1]):
            a, p = self.heads(h)
            logits.append(a)
            pos.append(p)
            if t + 1 < inputs.shape[1]:
                h = self.cell(torch.cat([inputs[:, t], code], dim=-1), h)
        return torch.stack(logits, 1), torch.stack(pos, 1)

    @torch.no_grad()
    def decode(self, goal_vec: torch.Tensor, obs: torch.Tensor, prev: torch.Tensor, max_len: int,
               safe: Callable[[ActionStep], bool] | None = None) -> tuple[list[ActionStep], list[float]]:
        """Greedy constrained decoding of one plan (batch of 1): the steps and each chosen action's probability.

        ``safe``, when given, judges the first step (the one a mission takes now): the most probable
        action whose step it accepts is chosen (a step it refuses is never emitted while another
        action is left; when it refuses them all, the most probable one is kept)."""
        codec = self.codec
        code, h = self.initial(goal_vec, obs, prev)
        steps: list[ActionStep] = []
        probs: list[float] = []
        for t in range(max(int(max_len), 1)):
            logits, pos = self.heads(h)
            p = torch.softmax(logits[0], dim=-1)
            allowed = p[: codec.n_actions] if t == 0 else p
            a = int(torch.argmax(allowed))
            if a == codec.end:
                break
            step = codec.step(a, pos[0].tolist())
            if t == 0 and safe is not None and not safe(step):
                for b in torch.argsort(allowed, descending=True).tolist()[1:]:
                    alt = codec.step(int(b), pos[0].tolist())
                    if safe(alt):
                        a, step = int(b), alt
                        break
            steps.append(step)
            probs.append(float(p[a]))
            enc = torch.tensor([codec.encode(step)], dtype=goal_vec.dtype)
            h = self.cell(torch.cat([enc, code], dim=-1), h)
        return steps, probs


def state_dict_named(dec: PlanDecoder) -> dict[str, Any]:
    return {f"decoder.{k}": v.detach().contiguous() for k, v in dec.state_dict().items()}
