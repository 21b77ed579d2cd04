"""``cadenza env distill``: DAgger from the promoted teacher, export, register, measure, report.

Candidate files land in ``<project>/student/candidate/`` and are registered as an immutable student
version; the report is ``<project>/student/distill_report.json``. The version is judged (and
promoted) by ``cadenza env distill eval``; the numbers this command prints come from the same
scoring code on the same held-out episodes, so the two agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cadenza.accel import configure
from cadenza.distill.dagger import DaggerConfig, DaggerRound, load_teacher, run_dagger
from cadenza.distill.export import export_onnx, parity, quantize_int8, save_weights
from cadenza.distill.latency import latency_in_fresh_process
from cadenza.distill.runtime import FP32_NAME, INT8_NAME, META_NAME, WEIGHTS_NAME
from cadenza.distill.scoring import StudentScore, score_student
from cadenza.distill.student import FORMAT, StudentArch
from cadenza.governance.registry import open_registry
from cadenza.project.config import Project
from cadenza.scale.backend import ScaleSettings
from cadenza.tasks.factory import make_task
from cadenza.tracking import Tracker
from cadenza.utils.io import atomic_write_json, sha256_file
from cadenza.utils.versions import library_versions

SHIPPED_RUNTIME = "fp32"  # what `env run --controller student` and the latency check use (docs/distill.md)


@dataclass
class DistillResult:
    version: str
    score: StudentScore
    report: dict[str, Any]
    report_path: Path
    wall_s: float


def candidate_dir(project: Project, real: bool = False) -> Path:
    return project.student_dir / ("candidate-real" if real else "candidate")


def distill(project: Project, *, epochs: int | None = None, quantize: bool = False, device: str = "auto",
            real: bool = False, teacher: str = "residual", rounds: int | None = None, episodes: int | None = None,
            seed: int = 0, envs: int | None = None, on_round: Callable[[DaggerRound], None] | None = None,
            on_stage: Callable[[str], None] | None = None, scale: ScaleSettings | None = None,
            tracker: Tracker | None = None) -> DistillResult:
    """Distill the project's teacher into a student; see the module docstring. ``tracker``
    (:mod:`cadenza.tracking`) gets the settings, every DAgger round (step: the round), the scorecard
    preview and the student's files."""
    tracker = tracker or Tracker()
    t0 = time.perf_counter()
    stage = on_stage or (lambda _s: None)
    dc = project.config.distill
    accel = configure(device)
    probe = make_task(project, num_envs=1, real=real)
    spec = probe.spec
    probe.close()
    tch = load_teacher(project, kind=teacher, real=real, obs_dim=spec.obs_dim, act_dim=spec.act_dim)
    arch = StudentArch(obs_dim=spec.obs_dim, act_dim=spec.act_dim, hidden_dim=dc.hidden_dim,
                       low=spec.action_low, high=spec.action_high)
    cfg = DaggerConfig(rounds=rounds or dc.dagger_rounds, epochs=epochs or dc.epochs, seed=seed,
                       envs=envs or dc.rollout_envs, quant_aware_epochs=dc.quant_aware_epochs if quantize else 0)
    level = project.config.task.level

    def mk(n: int) -> Any:
        return make_task(project, num_envs=n, level=level, real=real, seed=seed)

    earlier = f" ({cfg.epochs_of(0)} in each earlier round)" if cfg.rounds > 1 else ""
    qat = f", then {cfg.quant_aware_epochs} int8-aware epochs" if cfg.quant_aware_epochs else ""
    stage(f"DAgger: {cfg.rounds} rounds x {cfg.envs} episodes from {tch.label} [{spec.label}], "
          f"{cfg.epochs} epochs in the last round{earlier}{qat}")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    scale = scale or ScaleSettings()
    workers = None
    if scale.rollout_workers > 1:
        scale.check_shards(cfg.envs, "collection envs")
        from cadenza.distill.rollout_shards import DaggerShard, shard_specs
        from cadenza.scale.shards import ShardWorkers

        specs = shard_specs(str(project.root), real=real, level=level, envs=cfg.envs, task_seed=seed,
                            shards=scale.rollout_workers, teacher=tch.describe(), arch=arch)
        stage(f"collecting in {scale.rollout_workers} shards on {scale.describe()}")
        workers = ShardWorkers(DaggerShard, specs, backend=scale.backend, address=scale.ray_address,
                               label="DAgger rollout worker", lost_hint="; nothing was written: run the command "
                                                                        "again")
    where = scale.training()
    tracker.params({"command": "env distill", "seed": seed, "quantize": quantize, "teacher": tch.describe(),
                    "dagger": asdict(cfg), "architecture": arch.as_dict(), "accel": accel.as_dict(),
                    "scale": where})

    def round_done(r: DaggerRound) -> None:
        tracker.metrics(r.as_dict(), step=r.round)
        if on_round is not None:
            on_round(r)

    try:
        dag = run_dagger(mk, tch, arch, cfg, device=accel.device, on_round=round_done, shards=workers)
    finally:
        if workers is not None:
            where = scale.training(workers.cluster)
            workers.close()
    timings["dagger_s"] = time.perf_counter() - t

    stage("export: ONNX fp32" + (" + int8" if quantize else "") + " + safetensors")
    t = time.perf_counter()
    out = candidate_dir(project, real)
    out.mkdir(parents=True, exist_ok=True)
    files = {WEIGHTS_NAME: out / WEIGHTS_NAME, FP32_NAME: out / FP32_NAME}
    save_weights(dag.student, files[WEIGHTS_NAME])
    export_onnx(dag.student, files[FP32_NAME])
    if quantize:
        files[INT8_NAME] = out / INT8_NAME
        quantize_int8(files[FP32_NAME], files[INT8_NAME])
    else:
        (out / INT8_NAME).unlink(missing_ok=True)
    check_obs = dag.val_obs[:4096]
    par = parity(dag.student, check_obs, {"fp32": files[FP32_NAME], "numpy": files[WEIGHTS_NAME],
                                          **({"int8": files[INT8_NAME]} if quantize else {})})
    sizes = {name: p.stat().st_size for name, p in files.items()}
    timings["export_s"] = time.perf_counter() - t

    teacher_desc = tch.describe()
    student_meta = {
        "format": FORMAT, "task": spec.label, "real": real, "architecture": arch.as_dict(),
        "params": arch.param_count(), "teacher": teacher_desc, "runtime": SHIPPED_RUNTIME,
        "normaliser": "inside the network: clip((obs - obs_mean) * obs_inv_std, -obs_clip, obs_clip)",
        "bounds": [arch.low, arch.high], "input": "obs", "output": "action",
        "ignored_obs": dag.ignored_obs,
        "dagger": {"config": dag.config, "rounds": [r.as_dict() for r in dag.rounds], "samples": dag.samples},
        "quant_aware": dag.quant_aware, "parity_max_abs": par, "bytes": sizes,
        "scale": where,  # where the DAgger rollouts ran (backend, rollout_workers, cluster)
        "sha256": {name: sha256_file(p) for name, p in files.items()},
    }
    atomic_write_json(out / META_NAME, student_meta)
    files[META_NAME] = out / META_NAME
    reg = open_registry(project)
    reg_meta = {"task": spec.label, "real": real, "teacher": teacher_desc, "runtime": SHIPPED_RUNTIME,
                "quantized": quantize, "params": arch.param_count(), "epochs": cfg.epochs, "rounds": cfg.rounds,
                "samples": dag.samples}
    version = reg.register("student", files, reg_meta)

    stage(f"evaluate: teacher and student on the same {episodes or project.config.governance.eval_episodes} "
          "episodes of held-out block 0 (one look: a preview; `distill eval` decides on the next block); latency")
    t = time.perf_counter()
    score = score_student(project, version, episodes=episodes, real=real, block=0, sequential=False)
    reg.record_preview("student", version, score.card)
    latency = dict(score.latency)
    latency["numpy"] = latency_in_fresh_process({"numpy": files[WEIGHTS_NAME]})["numpy"]
    timings["evaluate_s"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    timings["total_s"] = wall

    report = {
        "kind": "cadenza.distill.report", "project": project.name, "task": spec.label, "version": version,
        "teacher": teacher_desc, "architecture": arch.as_dict(), "params": arch.param_count(),
        "dagger": {"config": dag.config, "rounds": [r.as_dict() for r in dag.rounds], "samples": dag.samples},
        "ignored_obs": dag.ignored_obs, "quant_aware": dag.quant_aware,
        "files": {name: {"path": str(reg.path("student", version, name).relative_to(project.root)),
                         "bytes": sizes.get(name)}
                  for name in files},
        "int8_to_fp32_bytes": sizes[INT8_NAME] / sizes[FP32_NAME] if quantize else None,
        "parity_max_abs": {"candidate_heldout": par, "eval_states": score.parity},
        "evaluation": score.card.metrics,
        "gap": {p: _gap_summary(t) for p, t in score.evidence.gaps.items()},
        "latency_us": latency, "latency_budget_ms": project.config.governance.latency_budget_ms,
        "shipped_runtime": SHIPPED_RUNTIME,
        "scorecard_preview": score.card.as_dict(),
        "accel": accel.as_dict(), "timings_s": timings, "wall_s": wall,
        "versions": library_versions("torch", "onnx", "onnxruntime"),
    }
    report_path = project.student_dir / ("distill_report_real.json" if real else "distill_report.json")
    atomic_write_json(report_path, report)
    tracker.metrics({"evaluation": score.card.metrics}, step=cfg.rounds)
    tracker.tag("verdict_preview", score.card.verdict)
    tracker.tag("version", version)
    for path in (report_path, out / META_NAME):
        tracker.artifact(path)
    return DistillResult(version=version, score=score, report=report, report_path=report_path, wall_s=wall)


def _gap_summary(table: tuple[int, int, int, int]) -> dict[str, Any]:
    from cadenza.governance.stats import paired_diff_interval

    n = sum(table)
    lo, hi = paired_diff_interval(*table)
    return {"gap": (table[1] - table[2]) / n if n else 0.0, "interval": [lo, hi], "both": table[0],
            "teacher_only": table[1], "student_only": table[2], "neither": table[3]}
