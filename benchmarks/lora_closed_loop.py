"""Where the LoRA head's closed loop loses missions: train with given data settings, fly held-out sites.

Trains the head as ``env lora finetune`` does (:func:`cadenza.lora.data.build` and
:func:`cadenza.lora.train.fit` with the DAgger rounds) with the settings below, then flies ``--n``
missions per objective (site seeds from 1,000,003, the listed goal of each objective, at
``--perturb``) with the head, the scripted expert labelling every state the head visits, and the
scripted planner alone on the same sites. Prints success per objective with the failure reasons,
the per-decision agreement with the expert and the parameter error, and the first divergence from
the expert in each failed mission. Writes ``benchmarks/results/lora_closed_loop.json``.

    .venv/bin/python benchmarks/lora_closed_loop.py [--sites 60] [--steps 1200] [--rounds 2]
        [--dagger-sites 30] [--seed 0] [--n 100] [--perturb 0] [--no-walk-check] [--oracle-params]

``--oracle-params``: whenever the head picks the expert's action, the expert's parameters are taken
(how much of the gap is parameters). ``--no-walk-check``: decode without the walk check. Used for
the table in docs/results.md#lora-action-head.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadenza.accel.hardware import cpu_name
from cadenza.lora import data as lora_data
from cadenza.lora import head as head_mod
from cadenza.lora import train as lora_train
from cadenza.lora.dataset import load_dataset
from cadenza.lora.encoder import load_encoder
from cadenza.lora.features import StepCodec
from cadenza.lora.finetune import dagger_round, project_base
from cadenza.lora.missions import MissionSpec, expert, run_batch
from cadenza.mission.actions import ActionStep
from cadenza.mission.objectives import OBJECTIVES
from cadenza.mission.runner import mission_vocabulary
from cadenza.project.config import load_project
from cadenza.utils.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "lora_closed_loop.json"
FIRST_SITE = 1_000_003


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", nargs="?", default="examples/rescue-dog")
    ap.add_argument("--sites", type=int, default=lora_data.SITES, help="expert sites per objective")
    ap.add_argument("--steps", type=int, default=lora_train.DECODER_STEPS, help="stage-1 optimiser steps")
    ap.add_argument("--rounds", type=int, default=lora_train.DAGGER_ROUNDS, help="DAgger rounds in stage 1")
    ap.add_argument("--dagger-sites", type=int, default=None, help="sites per objective per DAgger round "
                    "(default: half of --sites, as finetune)")
    ap.add_argument("--hidden", type=int, default=lora_train.HIDDEN, help="decoder width")
    ap.add_argument("--copies", type=int, default=lora_data.AUGMENT_COPIES, help="augmented neighbours per state")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=100, help="missions per objective")
    ap.add_argument("--perturb", type=float, default=0.0)
    ap.add_argument("--no-walk-check", action="store_true")
    ap.add_argument("--oracle-params", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lora_train.DAGGER_ROUNDS = a.rounds
    lora_data.AUGMENT_COPIES = a.copies
    if a.no_walk_check:
        head_mod.safe_step = lora_train.safe_step = lambda s, o: True  # type: ignore[assignment]
    proj = load_project(a.project)
    vocab, _ = mission_vocabulary(proj)
    base = project_base(proj)
    max_steps = proj.config.mission.max_steps
    t0 = time.perf_counter()
    data = lora_data.build(load_dataset(proj), vocab, base, max_steps, seed=a.seed, sites=a.sites,
                           listed=list(proj.config.mission.goals))
    objectives = [o for o in OBJECTIVES if f"obj:{o}" in data.pools]
    dsites = a.dagger_sites if a.dagger_sites is not None else max(a.sites // 2, 1)
    res = lora_train.fit(load_encoder(proj.root), StepCodec.from_vocabulary(vocab), data, epochs=a.epochs, lr=2e-4,
                         rank=8, max_len=max_steps, seed=a.seed, decoder_steps=a.steps, hidden=a.hidden,
                         dagger=dagger_round(vocab, base, max_steps, dsites, a.seed, objectives))
    trained_s = time.perf_counter() - t0
    head = res.head
    goals = {o: next(g for g in proj.config.mission.goals if proj.config.mission.objective_of(g) == o)
             for o in objectives}
    specs = [MissionSpec(FIRST_SITE + s, o, goals[o]) for o in objectives for s in range(a.n)]

    def learner(rng: Any, label: ActionStep, obs: Any, prev: Any, i: int) -> ActionStep:
        step = head.decode(specs[i].goal, obs, prev, max_len=1).steps[0]
        if a.oracle_params and step.name == label.name:
            return ActionStep(step.name, dict(label.params))
        return step

    outs, decisions = run_batch(specs, [expert(vocab, s.objective) for s in specs], vocab, base,
                                max_steps=max_steps, perturb=a.perturb, noise=learner, record=True)
    ref, _ = run_batch(specs, [expert(vocab, s.objective) for s in specs], vocab, base, max_steps=max_steps,
                       perturb=a.perturb)
    per_obj = {}
    for o in objectives:
        mine = [x for x in outs if x.spec.objective == o]
        per_obj[o] = {"lora": sum(x.success for x in mine), "scripted": sum(x.success for x in ref
                                                                              if x.spec.objective == o),
                      "missions": len(mine), "failures": dict(collections.Counter(x.reason for x in mine
                                                                                  if not x.success))}
    same = [d.taken.name == d.label.name for d in decisions]
    errs = [abs(d.taken.params[p] - v) / (vocab.actions[d.label.name][p][1] - vocab.actions[d.label.name][p][0])
            for d, ok in zip(decisions, same, strict=True) if ok for p, v in d.label.params.items()]
    by_mission: dict[int, list[Any]] = collections.defaultdict(list)
    for d in decisions:
        by_mission[d.mission].append(d)
    first: collections.Counter[str] = collections.Counter()
    for m, ds in by_mission.items():
        if outs[m].success:
            continue
        for d in ds:
            if d.taken.name != d.label.name:
                first[f"{d.label.name} -> {d.taken.name}"] += 1
                break
            lo_hi = {p: vocab.actions[d.label.name][p] for p in d.label.params}
            if any(abs(d.taken.params[p] - v) / (lo_hi[p][1] - lo_hi[p][0]) > 0.05 for p, v in d.label.params.items()):
                first[f"{d.label.name} parameter off by > 5% of its range"] += 1
                break
        else:
            first["no divergence"] += 1
    result = {"project": str(a.project), "cpu": cpu_name(), "settings": vars(a), "train_seconds": round(trained_s, 1),
              "lora": sum(x.success for x in outs) / len(outs), "scripted": sum(x.success for x in ref) / len(ref),
              "missions": len(outs), "by_objective": per_obj, "decisions": len(decisions),
              "agreement": float(np.mean(same)), "param_error_median": float(np.median(errs)),
              "param_error_p90": float(np.percentile(errs, 90)), "first_divergence": dict(first.most_common())}
    atomic_write_json(OUT, result)
    for o, r in per_obj.items():
        print(f"{o:14s} lora {r['lora']}/{r['missions']}  scripted {r['scripted']}/{r['missions']}  {r['failures']}")
    print(f"lora {result['lora']:.1%}  scripted {result['scripted']:.1%}  ({len(outs)} missions, "
          f"perturb {a.perturb:g}); "
          f"agreement with the expert {result['agreement']:.1%} over {len(decisions)} decisions; parameter error "
          f"median {result['param_error_median']:.1%}, p90 {result['param_error_p90']:.1%} of the range")
    print("first divergence in failed missions:", dict(first.most_common()))
    print(f"trained in {trained_s:.0f} s; CPU {cpu_name()}; wrote {OUT}")


if __name__ == "__main__":
    main()
