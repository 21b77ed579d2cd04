"""``env lora eval`` and ``finetune --gate``: load the heads, score, record the verdict, promote or not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.governance.registry import open_registry
from cadenza.lora.encoder import load_encoder
from cadenza.lora.head import META_FILE, load_baseline
from cadenza.lora.planner import KIND, load_version
from cadenza.lora.scorecard import BASELINE_FILE, LoraScore, save_report, score
from cadenza.project.config import Project


@dataclass
class Evaluated:
    version: str
    score: LoraScore
    action: str
    report_path: Path


def latest_version(project: Project) -> str:
    v = open_registry(project).latest(KIND)
    if v is None:
        raise CadenzaError(f"{project.root} has no LoRA head yet; run `cadenza env lora finetune {project.root}` first")
    return v


def evaluate(project: Project, version: str, *, promote: bool, block: int | None = None,
             on_look: Callable[[Any], None] | None = None) -> Evaluated:
    from cadenza.accel.decisions import Workload
    from cadenza.accel.device import configure
    from cadenza.lora.finetune import project_base
    from cadenza.mission.runner import mission_vocabulary

    configure("cpu", Workload("lora", params=22_700_000, batch=1, training=False))
    reg = open_registry(project)
    vocab, _ = mission_vocabulary(project)
    base = project_base(project)
    head = load_version(project, version)
    frozen = load_baseline(reg.path(KIND, version, BASELINE_FILE), reg.path(KIND, version, META_FILE),
                           load_encoder(project.root))
    plans = head.meta.get("train_text_plans") or []
    nn = None
    if plans and len(plans) == len(frozen.train_texts):
        keep = [i for i, p in enumerate(plans) if p]
        nn = (frozen.train_vectors[keep].numpy(), [plans[i] for i in keep])
    promoted_v = reg.baseline(KIND)
    promoted = load_version(project, promoted_v) if promoted_v and promoted_v != version else None
    previous = None
    earlier = [v for v in reg.versions(KIND) if v < version]
    if earlier:
        prev_meta = reg.manifest(KIND, earlier[-1]).get("metadata", {})
        ds = head.meta.get("dataset", {})
        if prev_meta.get("examples") == ds.get("examples"):
            same = earlier[-1] == promoted_v and promoted is not None
            previous = promoted if same else load_version(project, earlier[-1])
    blk = reg.next_block(KIND, version) if block is None else block
    s = score(project, version, head, vocab, base, block=blk, promoted=promoted, promoted_version=promoted_v,
              frozen=frozen, frozen_nn=nn, previous=previous, on_look=on_look)
    action = reg.apply_verdict(KIND, version, s.card, promote, no_baseline="no LoRA head is promoted")
    return Evaluated(version, s, action, save_report(project, version, s))
