"""Fine-tuning the head: the decoder on the frozen encoder, then LoRA and the decoder together.

1. **Stage 1, frozen encoder** (``DECODER_STEPS`` steps): the training goal texts are embedded once
   by the frozen encoder and the decoder learns on them (batches of ``BATCH`` pairs). This decoder,
   kept aside, is the scorecard's *frozen-encoder baseline*.
2. **Stage 2, LoRA** (``--epochs`` epochs): LoRA matrices of rank ``--rank`` are injected into the
   encoder's attention projections (peft) and trained with the decoder. An epoch is one pass over the
   training pairs (the augmented neighbours of :mod:`cadenza.lora.data`, item 5, are drawn from but
   do not lengthen it); each step embeds ``TEXTS_PER_STEP`` goal texts through the adapted encoder
   (with gradients) and uses them for a batch of pairs. LoRA learns at ``--lr``, the decoder at
   ``DECODER_LR``; AdamW, cosine decay.
3. **Abstention threshold**: see :func:`calibrate`.

``torch.manual_seed(seed)`` and the seeded data make a run repeatable on one machine and thread count.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cadenza.lora.augment import normalise, paraphrases
from cadenza.lora.data import Batch, TrainData, cosine_schedule, loss_of, tensorise
from cadenza.lora.decoder import DecoderConfig, PlanDecoder
from cadenza.lora.features import StepCodec, observation_features, safe_step
from cadenza.lora.head import ActionHead, apply_lora

BATCH = 256
DECODER_STEPS = 5000
HIDDEN = 256
OPEN_EVERY = 8  # every 8th step is a batch of open-loop plans (the rest: observation-conditioned steps)
DECODER_LR = 2e-3
TEXTS_PER_STEP = 16
DAGGER_ROUNDS = 2  # DAgger rounds during stage 1, evenly spaced
# Sentences unrelated to any robot mission: the negatives the abstention threshold is calibrated on.
NEGATIVES = (
    "make me a cup of tea", "what is the weather tomorrow", "book a table for two", "play some jazz music",
    "write a poem about the sea", "translate this sentence into french", "how much does a car cost",
    "order more printer paper", "send an email to my manager", "what time is it in tokyo",
    "bake a chocolate cake", "water the plants in the office", "sort these numbers", "sing happy birthday",
    "tell me a joke", "summarise this article", "pay the electricity bill", "open the spreadsheet",
    "recommend a good novel", "turn up the thermostat", "call a taxi to the airport", "fold the laundry",
    "paint the fence blue", "feed the cat", "compile the source code", "buy shares of the company",
    "schedule a dentist appointment", "explain quantum physics", "knit a scarf", "vacuum the living room",
)


@dataclass
class FitResult:
    head: ActionHead
    frozen: PlanDecoder  # stage 1: the decoder on the frozen encoder (a baseline)
    frozen_vectors: torch.Tensor  # frozen-encoder embeddings of ``data.train_texts``
    data: TrainData
    seconds: dict[str, float] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    dagger_pairs: int = 0


def _assign(b: Batch, idx: list[int], pools: dict[str, list[str]], rng: random.Random,
            chosen: dict[str, list[str]] | None = None) -> list[str]:
    """A goal text for each pair of the batch (from the pair's pool, limited to ``chosen`` when given)."""
    out = []
    for i in idx:
        key = b.pools[i]
        texts = (chosen or {}).get(key) or pools[key]
        out.append(rng.choice(texts))
    return out


Policy = Callable[[dict[str, Any], Any, str], Any]  # (observation, previous step, objective) -> step


def _batches(pairs: list[Any], codec: StepCodec, max_len: int) -> tuple[Batch | None, Batch | None]:
    """(open-loop, closed-loop) tensors: plans without an observation, and observation-conditioned steps."""
    from cadenza.lora.data import HORIZON

    open_ = [p for p in pairs if p.observation is None]
    closed = [p for p in pairs if p.observation is not None]
    return (tensorise(open_, codec, max_len) if open_ else None,
            tensorise(closed, codec, HORIZON + 1) if closed else None)


def fit(encoder: Any, codec: StepCodec, data: TrainData, *, epochs: int, lr: float, rank: int, max_len: int,
        seed: int = 0, decoder_steps: int = DECODER_STEPS, hidden: int = HIDDEN,
        dagger: Callable[[Policy], list[Any]] | None = None,
        progress: Callable[[str, int, int], None] | None = None) -> FitResult:
    """Train the head (stage 1 then stage 2); ``progress(stage, done, total)`` is called every step.

    ``dagger(policy)``, when given, is called ``DAGGER_ROUNDS`` times, evenly spaced through stage 1 (after
    one and two thirds of it), with the stage-1 decoder as a policy (decoding with the walk check of
    :func:`cadenza.lora.features.safe_step`, as missions do); the pairs it returns (the states that
    policy visits, labelled by the expert) join the closed-loop data for the rest of training."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    open_b, closed_b = _batches(data.pairs, codec, max_len)
    texts = sorted({t for v in data.pools.values() for t in v})
    with torch.no_grad():
        frozen_all = torch.cat([encoder(texts[i:i + 64]) for i in range(0, len(texts), 64)])
    row = {t: i for i, t in enumerate(texts)}
    dec = PlanDecoder(DecoderConfig(goal_dim=int(encoder.dim), hidden=hidden), codec)
    opt = torch.optim.AdamW(dec.parameters(), lr=DECODER_LR, weight_decay=1e-4)
    losses: dict[str, list[float]] = {"frozen": [], "lora": []}

    def pick(b: Batch, size: int) -> list[int]:
        n = len(b.pools)
        return [rng.randrange(n) for _ in range(min(size, n))]

    def which(step: int) -> Batch:
        if open_b is None or closed_b is None:
            return open_b or closed_b  # type: ignore[return-value]
        return open_b if step % OPEN_EVERY == OPEN_EVERY - 1 else closed_b

    def step_on(optimiser: torch.optim.Optimizer, goal: torch.Tensor, b: Batch, idx: list[int]) -> float:
        """One optimiser step on the decoder's loss over rows ``idx`` of ``b`` with goal vectors ``goal``."""
        logits, pos = dec(goal, b.obs[idx], b.prev[idx], b.inputs[idx])
        loss = loss_of(logits, pos, b, idx)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    def policy(obs: dict[str, Any], prev: Any, objective: str) -> Any:
        text = rng.choice(data.pools[f"obj:{objective}"])
        goal = frozen_all[[row[text]]]
        o = torch.tensor([observation_features(obs)])
        p = torch.tensor([codec.encode(prev)])
        steps, _ = dec.decode(goal, o, p, 1, safe=lambda s: safe_step(s, obs))
        return steps[0]

    dagger_at = ({decoder_steps * k // (DAGGER_ROUNDS + 1) for k in range(1, DAGGER_ROUNDS + 1)}
                 if dagger is not None else set())
    dagger_pairs = 0
    for step in range(decoder_steps):
        if step in dagger_at and dagger is not None:
            dec.eval()
            extra = dagger(policy)
            dagger_pairs += len(extra)
            data.pairs.extend(extra)
            data.closed_loop += len(extra)
            open_b, closed_b = _batches(data.pairs, codec, max_len)
            dec.train()
        for g in opt.param_groups:
            g["lr"] = cosine_schedule(step, decoder_steps, DECODER_LR)
        b = which(step)
        idx = pick(b, BATCH)
        goal = frozen_all[[row[t] for t in _assign(b, idx, data.pools, rng)]]
        losses["frozen"].append(step_on(opt, goal, b, idx))
        if progress:
            progress("decoder on the frozen encoder", step + 1, decoder_steps)
    frozen = copy.deepcopy(dec).eval()
    t1 = time.perf_counter()

    apply_lora(encoder, rank)
    lora_params = [p for name, p in encoder.named_parameters() if "lora_" in name]
    opt = torch.optim.AdamW([{"params": lora_params, "lr": lr, "base": lr},
                             {"params": list(dec.parameters()), "lr": DECODER_LR / 4, "base": DECODER_LR / 4}],
                            weight_decay=1e-4)
    per_epoch = max(1, sum(not p.augmented for p in data.pairs) // BATCH)  # augmented neighbours do not count
    total = epochs * per_epoch
    keys = sorted(data.pools)
    for step in range(total):
        for g in opt.param_groups:
            g["lr"] = cosine_schedule(step, total, g["base"])
        b = which(step)
        idx = pick(b, BATCH)
        # the goal texts of this step: a few per pool the batch draws from
        used = sorted({b.pools[i] for i in idx}, key=keys.index)
        per = max(1, TEXTS_PER_STEP // max(len([k for k in used if k.startswith("obj:")]), 1))
        chosen = {k: rng.sample(data.pools[k], min(per if k.startswith("obj:") else 1, len(data.pools[k])))
                  for k in used}
        goals = _assign(b, idx, data.pools, rng, chosen)
        uniq = sorted(set(goals))
        encoder.train()
        vecs = encoder(uniq)
        pos_of = {t: i for i, t in enumerate(uniq)}
        goal = vecs[[pos_of[t] for t in goals]]
        dec.train()
        losses["lora"].append(step_on(opt, goal, b, idx))
        if progress:
            progress(f"LoRA rank {rank} + decoder", step + 1, total)
    encoder.eval()
    dec.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    t2 = time.perf_counter()

    train_texts = data.train_texts
    head = ActionHead(encoder, dec, codec, rank, train_texts, torch.zeros(0), 0.0, max_len)
    head.train_vectors = head.embed(train_texts) if train_texts else torch.zeros(0, encoder.dim)
    cal = calibrate(head, data)
    head.threshold = cal["threshold"]
    frozen_vectors = frozen_all[[row[t] for t in train_texts]] if train_texts else torch.zeros(0, encoder.dim)
    t3 = time.perf_counter()
    return FitResult(head, frozen, frozen_vectors, data,
                     {"frozen_decoder": t1 - t0, "lora": t2 - t1, "calibration": t3 - t2},
                     losses, cal, dagger_pairs)


def in_distribution_texts(data: TrainData, seed: int = 0) -> tuple[list[str], str]:
    """Goal texts that mean a known goal but were not trained on: the held-out groups and their
    paraphrases; without held-out groups, fresh paraphrases (another seed) of the training goals."""
    if data.heldout:
        out = []
        for ex in data.heldout:
            out += [normalise(ex.goal), *paraphrases(ex.goal, 3, seed + 1)]
        return sorted(set(out)), "held-out goal groups and their paraphrases"
    trained = set(data.train_texts)
    out = [t for ex in data.train if ex.source == "add" for t in paraphrases(ex.goal, 10, seed + 7)
           if t not in trained]
    return sorted(set(out)), "fresh paraphrases of the training goals"


def calibrate(head: ActionHead, data: TrainData) -> dict[str, Any]:
    """The abstention threshold: halfway between the 5th percentile of the similarities of
    in-distribution texts never trained on (:func:`in_distribution_texts`) and the 95th percentile of
    the similarities of :data:`NEGATIVES`. When the two overlap, the threshold is the 95th percentile
    of the negatives (it abstains on 5% of unrelated requests and accepts the in-distribution texts
    above it), and the calibration says so."""
    inside, what = in_distribution_texts(data)
    if not inside or not head.train_texts:
        return {"threshold": 0.0, "note": "no texts to calibrate on; never abstains"}
    sims_in = [head.similarity(v)[0] for v in head.embed(inside)]
    sims_out = [head.similarity(v)[0] for v in head.embed(list(NEGATIVES))]
    p05_in, p95_out = float(np.percentile(sims_in, 5)), float(np.percentile(sims_out, 95))
    separated = p05_in > p95_out
    threshold = (p05_in + p95_out) / 2 if separated else p95_out
    return {"threshold": round(threshold, 4), "in_distribution": what, "n_in": len(sims_in),
            "n_negatives": len(sims_out), "p05_in": round(p05_in, 4), "p95_negatives": round(p95_out, 4),
            "min_in": round(min(sims_in), 4), "max_negative": round(max(sims_out), 4), "separated": separated,
            "in_accepted": round(float(np.mean([s >= threshold for s in sims_in])), 4),
            "negatives_abstained": round(float(np.mean([s < threshold for s in sims_out])), 4)}
