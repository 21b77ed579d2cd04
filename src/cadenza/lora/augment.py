"""The deterministic local augmenter: paraphrases of goal texts and jittered step parameters.

Nothing here calls a model or the network: the same text and seed give the same paraphrases on any
machine. A paraphrase is made by, in turn:

1. replacing phrases with synonyms from :data:`SYNONYMS` (each replacement chosen by the seeded
   random stream, the original phrase kept with some probability);
2. sometimes wrapping the goal in a request frame from :data:`FRAMES` ("please {g}", "{g} now", ...).

Parameter jitter moves each parameter of a step by up to ``share`` of its range, clamped inside it.
"""

from __future__ import annotations

import random
import re

from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.project.config import normalise_goal as normalise

__all__ = ["FRAMES", "SYNONYMS", "jitter", "normalise", "paraphrases"]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "enter": ("go into", "get into", "move into", "head into"),
    "search for": ("look for", "find", "locate", "hunt for"),
    "reach": ("get to", "go to", "make it to"),
    "victim": ("casualty", "injured person", "survivor", "person"),
    "debris field": ("rubble field", "debris", "rubble", "debris zone"),
    "rubble": ("debris", "wreckage"),
    "climb onto": ("get up onto", "climb up onto", "get onto"),
    "ledge": ("step", "raised ledge", "platform"),
    "cross": ("get across", "go through", "pass"),
    "sit beside": ("sit next to", "sit down by", "sit by"),
    "them": ("the person", "them"),
    "and": ("and then", "then"),
    "walk": ("go", "move"),
}
FRAMES: tuple[str, ...] = ("please {g}", "{g} now", "your task: {g}", "go ahead and {g}", "{g}, carefully",
                           "I need you to {g}", "{g} please")


def paraphrases(text: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct paraphrases of ``text`` (never ``text`` itself, normalised)."""
    base = normalise(text)
    rng = random.Random(f"{base}|{seed}")
    keys = sorted(SYNONYMS, key=len, reverse=True)
    out: list[str] = []
    seen = {base}
    for _ in range(n * 8):
        if len(out) >= n:
            break
        words = base
        for k in keys:
            if re.search(rf"\b{re.escape(k)}\b", words) and rng.random() < 0.7:
                words = re.sub(rf"\b{re.escape(k)}\b", rng.choice(SYNONYMS[k]), words, count=1)
        if rng.random() < 0.4:
            words = rng.choice(FRAMES).format(g=words)
        words = normalise(words)
        if words not in seen:
            seen.add(words)
            out.append(words)
    return out


def jitter(steps: list[ActionStep], vocab: Vocabulary, rng: random.Random, share: float = 0.08) -> list[ActionStep]:
    """Each parameter moved by up to ``share`` of its range (uniform), clamped inside the range."""
    out = []
    for s in steps:
        params = {}
        for p, v in s.params.items():
            lo, hi = vocab.actions[s.name][p]
            params[p] = round(min(max(v + rng.uniform(-share, share) * (hi - lo), lo), hi), 2)
        out.append(ActionStep(s.name, params))
    return out
