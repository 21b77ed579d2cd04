"""``env lora finetune``: generate the data, fine-tune, register the head (kind ``lora``).

The dataset's coverage is checked first: a dataset too small to judge (:func:`coverage_only`) trains
nothing and answers NEEDS_DATA with the ``env lora add`` lines to run. Otherwise: the data of
:mod:`cadenza.lora.data` (with two DAgger rounds of the stage-1 decoder, labelled by the expert), the
two training stages of :mod:`cadenza.lora.train`, and one new immutable registry version holding
``adapter.safetensors``, ``adapter.json`` and ``baseline.safetensors`` (the frozen-encoder decoder the
scorecard compares with).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza.governance.registry import open_registry
from cadenza.lora import data as lora_data
from cadenza.lora.augment import normalise
from cadenza.lora.dataset import dataset_path, load_dataset
from cadenza.lora.features import StepCodec
from cadenza.lora.head import ADAPTER_FILE, META_FILE, ActionHead
from cadenza.lora.planner import KIND
from cadenza.lora.scorecard import BASELINE_FILE, LoraScore, coverage_only
from cadenza.lora.train import DECODER_STEPS, FitResult, fit
from cadenza.mission.objectives import OBJECTIVES
from cadenza.project.config import Project
from cadenza.utils.io import sha256_file


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 5
    lr: float = 2e-4
    rank: int = 8
    seed: int = 0
    sites: int = lora_data.SITES
    decoder_steps: int = DECODER_STEPS


@dataclass
class Finetuned:
    version: str
    fit: FitResult
    seconds: float
    metadata: dict[str, Any]


def project_base(project: Project) -> Any:
    from cadenza.base import load_base
    from cadenza.tasks.proxy.rescue_dog import ACT_DIM

    return load_base(project.config.base.source, project.root, ACT_DIM)


def text_plans(data: lora_data.TrainData) -> list[str | None]:
    """For each training text, the plan of the example it came from (None for merged records)."""
    plan: dict[str, str] = {}
    for key, texts in data.pools.items():
        if key.startswith("ex:"):
            ex = data.train[int(key[3:])]
            for t in texts:
                plan.setdefault(t, ex.steps_text())
    return [plan.get(t) for t in data.train_texts]


def dagger_round(vocab: Any, base: Any, max_steps: int, sites: int, seed: int, objectives: list[str]) -> Any:
    """A DAgger round: missions driven by the stage-1 policy, every state labelled by the expert."""
    rounds = [0]

    def collect(policy: Callable[..., Any]) -> list[lora_data.Pair]:
        rounds[0] += 1  # each round on new sites, split over the perturbation levels
        pairs: list[lora_data.Pair] = []
        for k, level in enumerate(lora_data.LEVELS):
            part = max(sites // len(lora_data.LEVELS), 1)
            objs = [o for o in objectives for _ in range(part)]

            def learner(rng: Any, label: Any, obs: Any, prev: Any, i: int, objs: list[str] = objs) -> Any:
                return policy(obs, prev, objs[i])

            got, _ = lora_data.expert_pairs(vocab, base, max_steps, part, seed, objectives, noise=learner,
                                            first_site=5_000 * rounds[0] + 2_000 * k, perturb=level)
            pairs += got
        return pairs

    return collect


def finetune(project: Project, opts: FinetuneOptions, *, progress: Callable[[str, int, int], None] | None = None,
             status: Callable[[str], None] | None = None) -> Finetuned | LoraScore:
    """Fine-tune and register; returns the NEEDS_DATA scorecard instead when coverage is short."""
    from cadenza.accel.decisions import Workload
    from cadenza.accel.device import configure
    from cadenza.lora.encoder import load_encoder
    from cadenza.mission.runner import mission_vocabulary

    t0 = time.perf_counter()
    say = status or (lambda s: None)
    accel = configure("cpu", Workload("lora", params=22_700_000, batch=24 * 12, expected_calls=opts.epochs * 8))
    say(f"torch: {accel.summary()} ({accel.reasons['threads']})")
    vocab, _ = mission_vocabulary(project)
    examples = load_dataset(project)
    base = project_base(project)
    short = coverage_only(project, vocab, base, examples)
    if short is not None:
        return short
    max_steps = project.config.mission.max_steps
    say(f"generating data: {len(examples)} examples, paraphrases, expert missions on "
        f"{opts.sites} sites x {len(OBJECTIVES)} objectives")
    data = lora_data.build(examples, vocab, base, max_steps, seed=opts.seed, sites=opts.sites,
                           listed=list(project.config.mission.goals))
    say(f"{len(data.pairs)} training pairs ({data.closed_loop} closed-loop states); held out "
        f"{len({normalise(e.goal) for e in data.heldout})} goal groups; loading the encoder")
    encoder = load_encoder(project.root)
    objectives = [o for o in OBJECTIVES if f"obj:{o}" in data.pools]
    codec = StepCodec.from_vocabulary(vocab)
    result = fit(encoder, codec, data, epochs=opts.epochs, lr=opts.lr, rank=opts.rank, max_len=max_steps,
                 seed=opts.seed, decoder_steps=opts.decoder_steps, progress=progress,
                 dagger=dagger_round(vocab, base, max_steps, max(opts.sites // 2, 1), opts.seed, objectives))
    head = result.head
    seconds = time.perf_counter() - t0
    ds = dataset_path(project)
    head.meta = {
        "heldout_goals": sorted({normalise(e.goal) for e in data.heldout}),
        "train_text_plans": text_plans(data),
        "calibration": result.calibration,
        "training": {"epochs": opts.epochs, "lr": opts.lr, "rank": opts.rank, "seed": opts.seed,
                     "sites_per_objective": opts.sites, "decoder_steps": opts.decoder_steps,
                     "pairs": len(data.pairs), "closed_loop_pairs": data.closed_loop,
                     "dagger_pairs": result.dagger_pairs, "expert_success": data.expert_success,
                     "seconds": {k: round(v, 1) for k, v in result.seconds.items()} | {"total": round(seconds, 1)},
                     "final_loss": {k: round(sum(v[-20:]) / max(len(v[-20:]), 1), 4) for k, v in
                                    result.losses.items() if v}},
        "dataset": {"examples": len(examples), "sha256": sha256_file(ds) if ds.is_file() else None},
        "accel": accel.as_dict(),
    }
    frozen = ActionHead(None, result.frozen, codec, 0, data.train_texts, result.frozen_vectors, -1.0, max_steps)
    with tempfile.TemporaryDirectory(prefix="cadenza-lora-") as tmp:
        files = head.save(Path(tmp))
        from safetensors.torch import save_file

        tensors = {k: v for k, v in frozen.tensors_decoder().items()}
        save_file(tensors, str(Path(tmp) / BASELINE_FILE))
        version = open_registry(project).register(
            KIND, {ADAPTER_FILE: files[ADAPTER_FILE], META_FILE: files[META_FILE],
                   BASELINE_FILE: Path(tmp) / BASELINE_FILE},
            metadata={"rank": opts.rank, "epochs": opts.epochs, "lr": opts.lr, "seed": opts.seed,
                      "encoder": head.metadata()["encoder"]["name"], "examples": len(examples),
                      "seconds": round(seconds, 1)})
    return Finetuned(version, result, seconds, head.meta)
