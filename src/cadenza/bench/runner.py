"""Run the bench: every (arm, seed) training run, the base-alone reference, the verdict, the report files."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cadenza.bench.arms import (
    ARM_KINDS,
    RESIDUAL_KINDS,
    SB3_KINDS,
    ArmSpec,
    Job,
    arm_specs,
    run_job,
    sb3_import_error,
)
from cadenza.bench.cost import Rates, run_cost
from cadenza.bench.measure import eval_targets, first_reaching, median_steps
from cadenza.bench.verdict import ArmResult, BenchVerdict, decide
from cadenza.errors import CadenzaError
from cadenza.governance.stats import wilson
from cadenza.project.config import Project
from cadenza.scale.backend import ScaleSettings, resolve_scale
from cadenza.tracking import Tracker

DEFAULT_EVAL_EPISODES = 200


@dataclass
class BenchSettings:
    steps: int
    seeds: list[int]
    arms: list[ArmSpec]
    full_reward: str
    device: str
    real: bool
    rates: Rates
    eval_episodes: int  # per periodic evaluation
    final_episodes: int  # final evaluation of every run, and the base alone
    workers: int
    skipped: list[dict[str, str]] = field(default_factory=list)  # arms that could not run, with why
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    # per-arm budgets by arm kind, over ``steps`` (benchmarks/sample_efficiency.py runs the residual arms shorter
    # than the from-scratch ones: a residual run far past its threshold only costs time); no CLI flag sets it
    arm_steps: dict[str, int] = field(default_factory=dict)
    # benchmarks/sample_efficiency.py's own (no CLI flag): a JSONL every run appends its evaluations to as they come,
    # and whether a run stops once two consecutive evaluations reach the success threshold (Job.stop_when_sustained)
    evals_log: Path | None = None
    stop_when_sustained: bool = False

    def command(self, project: Project) -> str:
        arms = sorted({a.kind for a in self.arms} | {s["kind"] for s in self.skipped}, key=ARM_KINDS.index)
        parts = [f"cadenza env residual bench {project.root}", f"--steps {self.steps}", f"--seeds {len(self.seeds)}",
                 f"--arms {','.join(arms)}", f"--full-reward {self.full_reward}",
                 f"--cost-per-gpu-hour {self.rates.gpu_per_hour:g}",
                 f"--cost-per-cpu-core-hour {self.rates.cpu_core_per_hour:g}", f"--device {self.device}",
                 f"--eval-episodes {self.eval_episodes}", f"--workers {self.workers}"]
        if self.real:
            parts.append("--real")
        if self.scale.backend != "local":
            parts.append(f"--backend {self.scale.backend}")
        if self.scale.ray_address:
            parts.append(f"--ray-address {self.scale.ray_address}")
        return " ".join(parts)


def resolve_settings(project: Project, *, steps: int | None = None, seeds: int | None = None,
                     arms: str = "residual,full,sb3", full_reward: str | None = None, device: str = "auto",
                     real: bool = False, cost_per_gpu_hour: float | None = None,
                     cost_per_cpu_core_hour: float | None = None, eval_episodes: int | None = None,
                     workers: int | None = None, backend: str | None = None,
                     ray_address: str | None = None) -> BenchSettings:
    """Flags over ``[bench]`` in cadenza.toml; a bad value is a one-line CadenzaError."""
    from cadenza.accel import pick_device
    from cadenza.accel.device import physical_cores

    b = project.config.bench
    steps = b.steps if steps is None else steps
    n_seeds = b.seeds if seeds is None else seeds
    if steps < 1:
        raise CadenzaError(f"--steps must be >= 1, got {steps}")
    if n_seeds < 1:
        raise CadenzaError(f"--seeds must be >= 1, got {n_seeds}")
    if not real and project.config.task.episodes == "mission":
        raise CadenzaError(f"{project.root / 'cadenza.toml'}: key 'task.episodes': bench compares the arms on "
                           "dash episodes ('dash'); the mission reward tracks the base, which a full-RL arm "
                           "does not have")
    try:
        residual_reward = project.config.residual.reward
        full_reward = full_reward or "same"
        specs = arm_specs(arms.split(","), full_reward, residual_reward)
        if full_reward == "same":
            full_reward = residual_reward
        rates = Rates(b.cost_per_gpu_hour if cost_per_gpu_hour is None else cost_per_gpu_hour,
                      b.cost_per_cpu_core_hour if cost_per_cpu_core_hour is None else cost_per_cpu_core_hour)
    except ValueError as e:
        raise CadenzaError(str(e)) from None
    eval_episodes = DEFAULT_EVAL_EPISODES if eval_episodes is None else eval_episodes
    if eval_episodes < 1:
        raise CadenzaError(f"--eval-episodes must be >= 1, got {eval_episodes}")
    scale = resolve_scale(project.config.scale, backend, ray_address)
    dev = pick_device(device)
    skipped = []
    if any(a.kind in SB3_KINDS for a in specs):
        why = sb3_import_error()
        if why is not None:
            skipped = [{"arm": a.id, "kind": a.kind, "reward": a.reward, "label": a.label, "reason": why}
                       for a in specs if a.kind in SB3_KINDS]
            specs = [a for a in specs if a.kind not in SB3_KINDS]
    runs = len(specs) * n_seeds
    if workers is None:
        workers = min(physical_cores(), os.cpu_count() or 1, runs) if dev == "cpu" else 1
    if workers < 1:
        raise CadenzaError(f"--workers must be >= 1, got {workers}")
    seed0 = project.config.residual.seed
    return BenchSettings(steps=steps, seeds=[seed0 + i for i in range(n_seeds)], arms=specs, full_reward=full_reward,
                         device=device, real=real, rates=rates, eval_episodes=eval_episodes,
                         final_episodes=project.config.governance.eval_episodes, workers=min(workers, max(runs, 1)),
                         skipped=skipped, scale=scale)


@dataclass
class BenchResult:
    out_dir: Path
    report: dict[str, Any]
    verdict: BenchVerdict
    wall_s: float


RunCallback = Callable[[dict[str, Any], int, int], None]


def _jobs(project: Project, s: BenchSettings, threads: int | None) -> list[Job]:
    # longest runs first, so parallel workers finish together
    order = {"sb3-sac-utd1": 0, "sb3-sac": 1, "sb3": 2, "residual-sac": 3, "full": 4, "residual": 5}
    stop = project.config.governance.success_threshold if s.stop_when_sustained else None
    jobs = [Job(project_root=str(project.root), arm_id=a.id, kind=a.kind, reward=a.reward, seed=seed,
                steps=s.arm_steps.get(a.kind, s.steps),
                device=s.device, real=s.real, eval_episodes=s.eval_episodes, final_episodes=s.final_episodes,
                threads=threads, evals_log=None if s.evals_log is None else str(s.evals_log),
                stop_when_sustained=stop) for a in s.arms for seed in s.seeds]
    return sorted(jobs, key=lambda j: order[j.kind])


def _execute(jobs: list[Job], workers: int, on_run: RunCallback | None,
             scale: ScaleSettings | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every job's result (completion order) and where they ran (the report's ``scale``)."""
    results: list[dict[str, Any]] = []

    def done(r: dict[str, Any]) -> None:
        results.append(r)
        if on_run is not None:
            on_run(r, len(results), len(jobs))

    if scale is not None and scale.backend == "ray":
        from cadenza.scale.ray_map import ray_map

        # one CPU and one torch thread per run, as the local workers; a local instance gets --workers CPUs
        ray_jobs = [replace(j, threads=1) for j in jobs]
        res = ray_map(run_job, ray_jobs, address=scale.ray_address, num_cpus=workers, on_done=lambda _i, r: done(r))
        info = res.as_dict()
        return results, {**scale.as_dict(), "nodes": info["nodes"], "cpus": info["cpus"],
                         "nodes_used": info["nodes_used"], "retries": info["retries"]}
    local = {**(scale or ScaleSettings()).as_dict(), "nodes": 1, "cpus": os.cpu_count() or 1, "nodes_used": 1,
             "retries": 0}
    _execute_local(jobs, workers, done)
    return results, local


def _execute_local(jobs: list[Job], workers: int, done: Callable[[dict[str, Any]], None]) -> None:
    """One process per run (``workers`` at a time; in this process when 1)."""
    if workers <= 1:
        for j in jobs:
            done(run_job(j))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                               initargs=(os.getpid(),))
    try:
        futures = [pool.submit(run_job, j) for j in jobs]
        for f in as_completed(futures):
            done(f.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _die_with_parent(parent: int, every_s: float = 1.0) -> None:
    """A bench worker's initializer: exit once ``parent`` is gone. A bench stopped by SIGTERM or SIGKILL (``kill``,
    ``timeout``, a CI job cancelled) runs no clean-up, and its workers would go on training for hours, orphaned."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _base_reference(project: Project, s: BenchSettings) -> dict[str, Any]:
    from cadenza.base.loader import load_base
    from cadenza.residual.evaluate import evaluate
    from cadenza.residual.scaffold import arch_from_spec
    from cadenza.residual.scoring import EVAL_SEED, eval_chunk
    from cadenza.tasks.factory import base_source, make_task

    arch = arch_from_spec(project, s.real)
    base = load_base(base_source(project, s.real), project.root, arch.act_dim)
    level = project.config.task.level

    def run(episodes: int) -> Any:
        return evaluate(lambda n: make_task(project, num_envs=n, level=level, real=s.real), base, None,
                        episodes=episodes, seed=EVAL_SEED, chunk=eval_chunk(project, s.real), label="base alone")

    st, cur = run(s.final_episodes), run(s.eval_episodes)
    lo, hi = wilson(st.successes, st.episodes)
    return {"label": "base alone (reference)", "task": st.task, "episodes": st.episodes, "successes": st.successes,
            "success_rate": st.success_rate, "success_ci": [lo, hi], "collisions": st.collisions,
            "collision_rate": st.collision_rate, "mean_return": st.mean_return,
            # on the learning curve's episodes, so it compares with the curves' points
            "curve_point": {"env_steps": 0, "episodes": cur.episodes, "successes": cur.successes,
                            "collisions": cur.collisions, "success_rate": cur.success_rate,
                            "collision_rate": cur.collision_rate, "mean_return": cur.mean_return}}


def summarise(spec: ArmSpec, runs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """One arm over its seeds: means of the costs, pooled final success with its Wilson interval, steps to threshold."""
    runs = sorted(runs, key=lambda r: r["seed"])
    n = len(runs)
    eps = sum(r["final"]["episodes"] for r in runs)
    succ = sum(r["final"]["successes"] for r in runs)
    coll = sum(r["final"]["collisions"] for r in runs)
    lo, hi = wilson(succ, eps)
    stt = [r["steps_to_threshold"] for r in runs]
    med = median_steps(stt)

    def mean(key: str) -> float:
        return sum(r[key] for r in runs) / n

    def mean_cost(key: str) -> float:
        return sum(r["cost"][key] for r in runs) / n

    summary = {
        "seeds": n, "env_steps": mean("env_steps"), "wall_s": mean("wall_s"), "cpu_s": mean("cpu_s"),
        "device_hours": mean_cost("device_hours"), "device_hours_unit": runs[0]["cost"]["unit"],
        "dollars": mean_cost("dollars"), "dollars_all_seeds": sum(r["cost"]["dollars"] for r in runs),
        "final_episodes": eps, "final_successes": succ, "success_rate": succ / eps if eps else 0.0,
        "success_ci": [lo, hi], "collision_rate": coll / eps if eps else 0.0,
        "mean_return": sum(r["final"]["mean_return"] * r["final"]["episodes"] for r in runs) / eps if eps else 0.0,
        "steps_to_threshold": stt, "steps_to_threshold_median": med,
        "seeds_reaching_threshold": sum(v is not None for v in stt),
    }
    ar = arm_result(spec, summary)
    summary["cost_to_threshold"] = ar.cost_to_threshold()
    return summary


def arm_result(spec: ArmSpec, summary: dict[str, Any]) -> ArmResult:
    return ArmResult(name=spec.label, steps_to_threshold=tuple(summary["steps_to_threshold"]),
                     env_steps=summary["env_steps"], successes=summary["final_successes"],
                     episodes=summary["final_episodes"], dollars=summary["dollars"])


def run_bench(project: Project, s: BenchSettings, *, on_run: RunCallback | None = None,
              out_root: Path | None = None, tracker: Tracker | None = None,
              prior_runs: list[dict[str, Any]] | None = None, only_seeds: list[int] | None = None) -> BenchResult:
    """``tracker`` (:mod:`cadenza.tracking`) gets the settings, every run's learning curve as it finishes
    (``<arm>/seed<seed>/success`` against env steps), the verdict and the report's files.

    ``prior_runs``: runs of these settings finished earlier (what ``on_run`` was given): their (arm, seed) jobs are not
    run again and they count in the report as if run now; ``only_seeds``: run only these of ``s.seeds`` now (the rest
    are left to a later call with ``prior_runs``); every arm needs a run in the report, so each must have one."""
    from cadenza.accel.device import physical_cores
    from cadenza.bench.plot import plot_curves
    from cadenza.bench.report import build_report, write_report

    tracker = tracker or Tracker()
    tracker.params({"command": s.command(project), "steps": s.steps, "seeds": s.seeds,
                    "arms": [a.id for a in s.arms], "full_reward": s.full_reward, "device": s.device,
                    "eval_episodes": s.eval_episodes, "final_episodes": s.final_episodes, "workers": s.workers,
                    "scale": s.scale.as_dict()})

    def tracked(r: dict[str, Any], done: int, total: int) -> None:
        for point in r["curve"]:
            tracker.metrics({f"{r['arm']}/seed{r['seed']}/success": point["success_rate"],
                             f"{r['arm']}/seed{r['seed']}/collisions": point["collision_rate"]},
                            step=point["env_steps"])
        if on_run is not None:
            on_run(r, done, total)

    g = project.config.governance
    t0 = time.perf_counter()
    load_before = _loadavg()
    base_row = _base_reference(project, s)
    threads = 1 if s.workers > 1 else None
    prior = list(prior_runs or [])
    have = {(r["arm"], r["seed"]) for r in prior}
    jobs = [j for j in _jobs(project, s, threads) if (j.arm_id, j.seed) not in have
            and (only_seeds is None or j.seed in only_seeds)]
    results, scale = _execute(jobs, s.workers, tracked, s.scale)
    results = prior + results
    for r in results:
        r["steps_to_threshold"] = first_reaching(r["curve"], g.success_threshold)
        r["cost"] = run_cost(r["device"], r["wall_s"], r["cpu_s"], s.rates).as_dict()
        lo, hi = wilson(r["final"]["successes"], r["final"]["episodes"])
        r["final"]["success_ci"] = [lo, hi]
    arms = []
    for spec in s.arms:
        runs = sorted((r for r in results if r["arm"] == spec.id), key=lambda r: r["seed"])
        arms.append({"id": spec.id, "kind": spec.kind, "label": spec.label, "reward": spec.reward,
                     "skipped": False, "note": "", "runs": runs,
                     "summary": summarise(spec, runs, g.success_threshold)})
    for sk in s.skipped:
        arms.append({"id": sk["arm"], "kind": sk["kind"], "label": sk["label"], "reward": sk["reward"],
                     "skipped": True, "note": sk["reason"], "runs": [], "summary": None})
    ran = list(zip(s.arms, arms[:len(s.arms)], strict=True))
    res_arm = arm_result(ran[0][0], ran[0][1]["summary"])
    # the verdict: the residual (PPO) against the from-scratch arms; a residual-sac arm is reported, not a peer
    others = [arm_result(spec, a["summary"]) for spec, a in ran[1:] if spec.kind not in RESIDUAL_KINDS]
    verdict = decide(res_arm, others, threshold=g.success_threshold, margin=g.regression_margin,
                     confidence=g.confidence)
    wall = time.perf_counter() - t0
    out_dir = _out_dir(out_root or project.root / "bench")
    machine = {"cpus": os.cpu_count(), "physical_cores": physical_cores(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine(), "loadavg_before": load_before,
               "loadavg_after": _loadavg()}
    report = build_report(project, s, arms=arms, base_row=base_row, verdict=verdict, wall_s=wall, machine=machine,
                          eval_targets=eval_targets(s.steps), scale=scale)
    plot_curves(report, out_dir / "curves.png")
    write_report(report, out_dir)
    tracker.tag("verdict", verdict.outcome)
    for a in arms:
        if a["summary"] is not None:
            tracker.metrics({f"{a['id']}/final_success": a["summary"]["success_rate"]}, step=s.steps)
    for name in ("report.md", "report.json", "curves.png"):
        tracker.artifact(out_dir / name)
    return BenchResult(out_dir=out_dir, report=report, verdict=verdict, wall_s=wall)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _out_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = root / stamp, 2
    while path.exists():
        path, i = root / f"{stamp}-{i}", i + 1
    path.mkdir(parents=True)
    return path
