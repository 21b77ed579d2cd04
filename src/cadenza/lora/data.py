"""Training data for the LoRA head: what ``env lora finetune`` generates, exactly.

From the dataset (:mod:`cadenza.lora.dataset`) and the project's world:

1. **goal groups.** Every ``env lora add`` example is a goal group: its text and its paraphrases.
   :func:`split_groups` holds out about one group in four of each objective that has at least three
   (chosen by a hash of the normalised text, so the split is stable); no text of a held-out group,
   nor any paraphrase of it, is ever trained on. The scorecard judges fidelity on those groups.
2. **paraphrases.** Each training goal gets ``PARAPHRASES`` paraphrases from the deterministic local
   augmenter (:func:`cadenza.lora.augment.paraphrases`).
3. **open-loop plans.** Each training example is a target plan for its goal with no observation
   (``env lora decode`` answers in this form), plus ``JITTER_COPIES`` copies whose parameters move by
   up to 8% of their range (inside it).
4. **closed-loop states.** The scripted planner pursuing each objective
   (:func:`cadenza.lora.missions.expert`) runs missions on ``SITES`` generated training sites per
   objective (site seeds from :data:`TRAIN_SITE_SEED`, far from every held-out block), with the
   project's base, half at each perturbation level of :data:`LEVELS` (0 and 1). At each decision,
   with probability ``NOISE_P``, a perturbed step is taken instead of the expert's (a turn or a
   distance scaled by 0.6-1.4, DART-style), so the missions visit states off the expert's own
   path; every visited state is labelled with the expert's step from that state (relabelled, as
   DAgger does; the expert keeps a detour in progress when its own action was taken with other
   parameters, and drops it when another action was taken). The target is the expert's step there
   (``HORIZON`` = 1: a mission takes only the first step of each plan). The goal text of each
   state is drawn, per batch, from its objective's training texts.
5. **state augmentation.** Every closed-loop state (item 4 and the DAgger rounds) gets
   ``AUGMENT_COPIES`` neighbours: the same site and posture, the body moved by a normal draw of
   ``AUGMENT_XY_M`` in x and y and turned by one of ``AUGMENT_YAW_DEG`` degrees, observed again and
   labelled by the expert with the memory it had at that decision (a detour in progress) and the
   same previous step; a neighbour in a collision, or crawling outside the debris field (standing
   in it), is dropped. No physics runs for them, so they cost about 50 microseconds each: the
   decoder sees many states around each decision the missions visit, which is what it lacks (on
   unseen sites its choice of action generalised from about 2,000 states to 86%; with these
   neighbours and more steps, see docs/results.md#lora-action-head).
6. **merged records** (``env lora data --finetune``): the step a successful mission took from the
   logged observation, and the mission's next steps.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cadenza.lora.augment import jitter, normalise, paraphrases
from cadenza.lora.dataset import Example
from cadenza.lora.features import StepCodec, observation_features
from cadenza.lora.missions import MissionSpec, expert, run_batch
from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.objectives import OBJECTIVES
from cadenza.mission.planners import PlannerInput
from cadenza.mission.world import collision_kind, observe

PARAPHRASES = 6
JITTER_COPIES = 3
SITES = 150  # training sites per objective
NOISE_P = 0.25
HORIZON = 1
TRAIN_SITE_SEED = 500_000  # training sites: 500,000 + i (held-out scorecard sites start at 1,000,003)
HOLDOUT_EVERY = 4
LEVELS = (0.0, 1.0)  # perturbation levels of the robot in the closed-loop missions (sites split evenly)
AUGMENT_COPIES = 10  # neighbours of each closed-loop state (item 5)
AUGMENT_XY_M = 0.15  # their position: normal, this standard deviation in x and in y (metres)
AUGMENT_YAW_DEG = 8.0  # their heading: normal, this standard deviation (degrees)


@dataclass
class Pair:
    """One training target: a goal (a text pool), what is seen, and the steps to emit."""

    pool: str  # key into TrainData.pools: an objective ("obj:<name>") or an example group ("ex:<i>")
    observation: dict[str, Any] | None
    prev: ActionStep | None
    steps: list[ActionStep]
    end: bool  # the plan ends after ``steps`` (END is a target)
    augmented: bool = False  # a neighbour of a visited state (item 5), not a state a mission visited


@dataclass
class TrainData:
    train: list[Example]
    heldout: list[Example]
    pools: dict[str, list[str]]  # pool key -> goal texts
    pairs: list[Pair]
    closed_loop: int = 0
    expert_success: dict[str, float] = field(default_factory=dict)

    @property
    def train_texts(self) -> list[str]:
        return sorted({t for k, v in self.pools.items() if k.startswith("obj:") for t in v})


def _hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def split_groups(examples: list[Example], listed: list[str] = ()) -> tuple[list[Example], list[Example]]:
    """(train, held-out) ``add`` examples: per objective with >= 3 distinct goals, every
    ``HOLDOUT_EVERY``-th goal in hash order is held out (all its examples). The project's listed goals
    (``mission.goals``) are always trained on."""
    added = [e for e in examples if e.source == "add"]
    keep = {normalise(g) for g in listed}
    held: set[str] = set()
    for obj in OBJECTIVES:
        goals = sorted({normalise(e.goal) for e in added if e.objective == obj} - keep, key=_hash)
        if len(goals) >= 3:
            held |= {g for i, g in enumerate(goals) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1}
    train = [e for e in examples if normalise(e.goal) not in held]
    return train, [e for e in added if normalise(e.goal) in held]


def noise_step(vocab: Vocabulary) -> Any:
    def noise(rng: np.random.Generator, label: ActionStep, obs: dict[str, Any], prev: ActionStep | None,
              i: int) -> ActionStep | None:
        if rng.random() >= NOISE_P or not label.params:
            return None
        params = {}
        for p, v in label.params.items():
            lo, hi = vocab.actions[label.name][p]
            params[p] = round(min(max(v * rng.uniform(0.6, 1.4), lo), hi), 2)
        return ActionStep(label.name, params)

    return noise


def expert_pairs(vocab: Vocabulary, base: Any, max_steps: int, sites: int, seed: int,
                 objectives: list[str], noise: Any = None, first_site: int = 0,
                 perturb: float = 0.0) -> tuple[list[Pair], dict[str, float]]:
    """Closed-loop pairs from expert-labelled missions (see the module docstring, item 4); ``noise``
    chooses the step taken instead of the expert's (default: the DART perturbation)."""
    specs = [MissionSpec(TRAIN_SITE_SEED + seed * 10_000 + first_site + s, o, o) for o in objectives
             for s in range(sites)]
    planners = [expert(vocab, s.objective) for s in specs]
    outs, decisions = run_batch(specs, planners, vocab, base, max_steps=max_steps, perturb=perturb,
                                noise=noise or noise_step(vocab), noise_seed=seed + first_site, record=True)
    by_mission: dict[int, list[Any]] = {}
    for d in decisions:
        by_mission.setdefault(d.mission, []).append(d)
    pairs = []
    for m, ds in by_mission.items():
        for k, d in enumerate(ds):
            steps, end = [d.label], False
            if not d.noisy:
                j = k + 1
                while j < len(ds) and not ds[j].noisy and len(steps) < HORIZON:
                    steps.append(ds[j].label)
                    j += 1
                end = j == len(ds) and outs[m].success and len(steps) < HORIZON
            pairs.append(Pair(f"obj:{specs[m].objective}", d.observation, d.prev, steps, end))
    rng = np.random.default_rng([seed, first_site, 0xA06])
    pairs += neighbours(decisions, [s.objective for s in specs], vocab, rng)
    rates = {o: float(np.mean([x.success for x in outs if x.spec.objective == o])) for o in objectives}
    return pairs, rates


def neighbours(decisions: list[Any], objectives: list[str], vocab: Vocabulary, rng: np.random.Generator,
               copies: int | None = None) -> list[Pair]:
    """State augmentation (module docstring, item 5): ``copies`` (default ``AUGMENT_COPIES``)
    expert-labelled neighbours of each recorded decision (``objectives[d.mission]`` is the objective it
    pursued)."""
    copies = AUGMENT_COPIES if copies is None else copies
    out: list[Pair] = []
    for d in decisions:
        if d.site is None or d.state is None or copies <= 0:
            continue
        objective = objectives[d.mission]
        moves = rng.normal(0.0, 1.0, size=(copies, 3)) * (AUGMENT_XY_M, AUGMENT_XY_M, math.radians(AUGMENT_YAW_DEG))
        for dx, dy, dyaw in moves:
            s = replace(d.state, x=d.state.x + dx, y=d.state.y + dy, yaw=d.state.yaw + dyaw)
            if collision_kind(d.site, s, False) is not None or (s.posture == "crawling") != d.site.in_debris(s.x):
                continue
            obs = observe(d.site, s)
            teacher = expert(vocab, objective)
            teacher.detour = d.detour
            label = teacher.plan(PlannerInput("", "", obs, "", vocab, (d.prev,) if d.prev else (), d.index + 1))
            out.append(Pair(f"obj:{objective}", obs, d.prev, [label], False, augmented=True))
    return out


def build(examples: list[Example], vocab: Vocabulary, base: Any, max_steps: int, seed: int = 0,
          sites: int = SITES, listed: list[str] = ()) -> TrainData:
    train, heldout = split_groups(examples, listed)
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {f"obj:{o}": [] for o in OBJECTIVES}
    pairs: list[Pair] = []
    for i, ex in enumerate(train):
        if ex.source != "add":
            continue
        texts = [normalise(ex.goal), *paraphrases(ex.goal, PARAPHRASES, seed)]
        pools[f"ex:{i}"] = texts
        pools[f"obj:{ex.objective}"] += texts
        pairs.append(Pair(f"ex:{i}", None, None, list(ex.steps), True))
        for _ in range(JITTER_COPIES):
            pairs.append(Pair(f"ex:{i}", None, None, jitter(ex.steps, vocab, rng), True))
    for i, ex in enumerate(train):
        if ex.source == "finetune":
            key = f"obj:{ex.objective}"
            pools.setdefault(f"fx:{i}", [normalise(ex.goal)])
            pairs.append(Pair(f"fx:{i}" if not pools[key] else key, ex.observation, ex.prev, list(ex.steps), False))
    pools = {k: sorted(set(v)) for k, v in pools.items() if v}
    objectives = [o for o in OBJECTIVES if f"obj:{o}" in pools]
    closed: list[Pair] = []
    rates: dict[str, float] = {}
    if objectives:  # half the sites with the nominal robot, half with the most perturbed one
        for k, level in enumerate(LEVELS):
            part = sites // len(LEVELS) + (1 if k < sites % len(LEVELS) else 0)
            got, r = expert_pairs(vocab, base, max_steps, part, seed, objectives, first_site=2_000 * k,
                                  perturb=level)
            closed += got
            rates.update({f"{o}@{level:g}": v for o, v in r.items()})
    return TrainData(train, heldout, pools, pairs + closed, len(closed), rates)


@dataclass
class Batch:
    pools: list[str]
    obs: Any
    prev: Any
    inputs: Any
    actions: Any
    positions: Any
    masks: Any


def tensorise(pairs: list[Pair], codec: StepCodec, max_len: int) -> Batch:
    """Fixed tensors of a list of pairs (targets padded; -100 = no target at that position)."""
    import torch

    n = len(pairs)
    length = max(1, min(max_len, max(len(p.steps) + int(p.end) for p in pairs)))
    obs = torch.tensor([observation_features(p.observation) for p in pairs], dtype=torch.float32)
    prev = torch.tensor([codec.encode(p.prev) for p in pairs], dtype=torch.float32)
    inputs = torch.zeros(n, length, codec.step_dim)
    actions = torch.full((n, length), -100, dtype=torch.long)
    positions = torch.zeros(n, length, max(codec.n_slots, 1))[..., : codec.n_slots]
    masks = torch.zeros_like(positions)
    for i, p in enumerate(pairs):
        for t, s in enumerate(p.steps[:length]):
            a, pos, mask = codec.target(s)
            actions[i, t] = a
            positions[i, t] = torch.tensor(pos)
            masks[i, t] = torch.tensor(mask)
            inputs[i, t] = torch.tensor(codec.encode(s))
        if p.end and len(p.steps) < length:
            actions[i, len(p.steps)] = codec.end
    return Batch([p.pool for p in pairs], obs, prev, inputs, actions, positions, masks)


def loss_of(logits: Any, pos: Any, b: Batch, idx: Any = None) -> Any:
    import torch

    actions, positions, masks = (b.actions, b.positions, b.masks) if idx is None else (
        b.actions[idx], b.positions[idx], b.masks[idx])
    weight = torch.ones(actions.shape[1])
    weight[0] = 2.0  # the first step is the one a mission takes
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), actions, ignore_index=-100, reduction="none")
    ce = (ce * weight).sum() / max(float((actions != -100).sum()), 1.0)
    se = ((pos - positions) ** 2 * masks).sum() / max(float(masks.sum()), 1.0)
    return ce + 20.0 * se


def cosine_schedule(step: int, total: int, lr: float) -> float:
    return lr * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
