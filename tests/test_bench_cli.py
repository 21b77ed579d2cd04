"""``cadenza env residual bench`` end to end on the real proxy with tiny budgets, and the SB3 adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.bench.arms import full_arch
from cadenza.bench.cost import Rates, run_cost
from cadenza.bench.measure import first_reaching
from cadenza.bench.schema import REPORT_SCHEMA, errors
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import ResidualController
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy
from tests.conftest import make_project, run_cli, tiny_reacher_project


def _bench_project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "dog",
        **{
            "task.num_envs": "16",
            "residual.hidden_dim": "32",
            "governance.eval_episodes": "40",
            "governance.max_eval_episodes": "120",
            "governance.min_episodes": "20",
            "bench.cost_per_cpu_core_hour": "0.1",
        },
    )


def _only_report(project: Path) -> tuple[Path, dict]:
    dirs = list((project / "bench").iterdir())
    assert len(dirs) == 1
    return dirs[0], json.loads((dirs[0] / "report.json").read_text())


@pytest.mark.slow
def test_tiny_bench_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _bench_project(tmp_path)
    code, out, err = run_cli(["env", "residual", "bench", proj, "--steps", "2048", "--seeds", "2",
                              "--eval-episodes", "20", "--workers", "2"], capsys, monkeypatch)
    out_dir, rep = _only_report(proj)
    assert errors(rep) == [], errors(rep)[:3]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(rep, REPORT_SCHEMA)
    # the exit code is the verdict's
    assert code == {"RESIDUAL_WINS": 0, "RESIDUAL_LOSES": 3}.get(rep["verdict"]["outcome"], 4), err
    assert rep["task"] == "proxy" and not rep["real"] and "proxy" in (out_dir / "report.md").read_text()
    assert (out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "verdict:" in out and str(out_dir / "report.md") in out.replace("\n", "")
    assert [a["id"] for a in rep["arms"]] == ["residual", "full", "sb3"]
    thr = rep["settings"]["success_threshold"]
    for a in rep["arms"]:
        assert not a["skipped"] and [r["seed"] for r in a["runs"]] == [0, 1]
        for r in a["runs"]:
            assert r["env_steps"] >= 2048 and r["threads"] == 1  # two workers: one thread each
            assert r["curve"][0]["env_steps"] == 0 and r["curve"][-1]["env_steps"] == r["env_steps"]
            assert r["final"]["episodes"] == 40 and all(p["episodes"] == 20 for p in r["curve"][:-1])
            assert r["steps_to_threshold"] == first_reaching(r["curve"], thr)
            expect = run_cost(r["device"], r["wall_s"], r["cpu_s"], Rates(2.0, 0.1))
            assert r["cost"]["dollars"] == pytest.approx(expect.dollars)
            assert r["cost"]["unit"] == "CPU core-hours" and r["cpu_s"] > 0
        s = a["summary"]
        assert s["final_episodes"] == 80
        assert s["dollars"] == pytest.approx(np.mean([r["cost"]["dollars"] for r in a["runs"]]))
    # the full arm is a policy from scratch: no base input, no gate
    full = rep["arms"][1]["runs"][0]
    assert full["architecture"]["use_base"] is False and full["hyperparameters"]["init_log_std"] == 0.0
    assert rep["arms"][2]["runs"][0]["hyperparameters"]["n_steps"] == 2048 // 16
    if all(a["summary"]["steps_to_threshold_median"] is None for a in rep["arms"]):
        assert rep["verdict"]["outcome"] == "NEEDS_DATA"  # a budget too small to judge never names a winner
    assert "--steps 2048 --seeds 2" in rep["command"]


@pytest.mark.slow
def test_sb3_arm_is_skipped_cleanly_without_the_package(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _bench_project(tmp_path)
    for name in [m for m in sys.modules if m == "stable_baselines3" or m.startswith("stable_baselines3.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import stable_baselines3 -> ImportError
    code, out, err = run_cli(["env", "residual", "bench", proj, "--steps", "2048", "--seeds", "1",
                              "--arms", "residual,sb3", "--eval-episodes", "10"], capsys, monkeypatch)
    assert code == 4, err
    assert "skipped" in out and "stable-baselines3 is not installed" in out.replace("\n", "")
    _, rep = _only_report(proj)
    assert errors(rep) == []
    sb3 = [a for a in rep["arms"] if a["kind"] == "sb3"]
    assert len(sb3) == 1 and sb3[0]["skipped"] and sb3[0]["runs"] == [] and "pip install" in sb3[0]["note"]
    assert rep["verdict"]["outcome"] == "NEEDS_DATA" and "no full-RL arm" in rep["verdict"]["line"]


@pytest.mark.parametrize("args, needle", [
    (["--arms", "residual,a2c"], "unknown arm 'a2c'"),
    (["--arms", "full,sb3"], "include 'residual'"),
    (["--full-reward", "shaped"], "--full-reward"),
    (["--steps", "0"], "--steps: expected an integer >= 1,000"),
    (["--seeds", "0"], "--seeds: expected an integer >= 1"),
    (["--cost-per-gpu-hour", "-1"], "--cost-per-gpu-hour: expected a finite number >= 0"),
    (["--cost-per-cpu-core-hour", "nan"], "--cost-per-cpu-core-hour: expected a finite number >= 0"),
    (["--backend", "spark"], "--backend"),
    (["--ray-address", "auto"], "--ray-address auto is only used with --backend ray"),
])
def test_bad_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, args: list[str], needle: str) -> None:
    """A flag that cannot work is a usage error (exit 2), refused before anything is written."""
    proj = _bench_project(tmp_path)
    code, _, err = run_cli(["env", "residual", "bench", proj, *args], capsys, monkeypatch)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (proj / "bench").exists()


@pytest.mark.slow
def test_off_policy_arms_run_and_stay_out_of_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """residual-sac (our SAC on the base) and sb3-sac (SB3's SAC from scratch) on the same batched task."""
    proj = _bench_project(tmp_path)
    code, _, err = run_cli(["env", "residual", "bench", proj, "--steps", "4096", "--seeds", "1", "--arms",
                            "residual,residual-sac,sb3-sac,sb3-sac-utd1", "--eval-episodes", "20", "--workers", "1"],
                           capsys, monkeypatch)
    _, rep = _only_report(proj)
    assert errors(rep) == [], errors(rep)[:3]
    assert code == {"RESIDUAL_WINS": 0, "RESIDUAL_LOSES": 3}.get(rep["verdict"]["outcome"], 4), err
    assert [a["id"] for a in rep["arms"]] == ["residual", "residual-sac", "sb3-sac", "sb3-sac-utd1"]
    res_sac, sb3_sac = rep["arms"][1]["runs"][0], rep["arms"][2]["runs"][0]
    assert res_sac["hyperparameters"]["utd"] == 2.0 and res_sac["architecture"]["use_base"] is True
    assert res_sac["hyperparameters"]["decision_ticks"] == 25 and res_sac["hyperparameters"]["base_steps"] == 819
    assert sb3_sac["hyperparameters"]["train_freq"] and sb3_sac["hyperparameters"]["buffer_size"] > 0
    # SB3's SAC ran with the SAC residual's starting temperature and update-to-data ratio (docs/bench.md)
    hp = sb3_sac["hyperparameters"]
    assert hp["ent_coef"] == "auto_0.001" and hp["gradient_steps"] == max(1, round(0.08 * hp["num_envs"]))
    utd1 = rep["arms"][3]["runs"][0]["hyperparameters"]  # one gradient step per env step
    assert utd1["ent_coef"] == "auto_0.001" and utd1["gradient_steps"] == utd1["num_envs"]
    for r in (res_sac, sb3_sac, rep["arms"][3]["runs"][0]):
        assert 4096 <= r["env_steps"] <= 4096 + 16 * 64 and r["final"]["episodes"] == 40
    # the verdict compares the residual with the from-scratch arms only
    assert [c["vs"] for c in rep["verdict"]["comparisons"]] == ["full RL (SB3 SAC)",
                                                                 "full RL (SB3 SAC, 1 update per step)"]
    assert "--arms residual,residual-sac,sb3-sac,sb3-sac-utd1" in rep["command"]


def test_backend_ray_without_ray_names_the_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _bench_project(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if the extra were not installed
    code, _, err = run_cli(["env", "residual", "bench", proj, "--backend", "ray"], capsys, monkeypatch)
    assert code != 0 and 'pip install -e ".[ray]"' in err and len(err.strip().splitlines()) == 1
    assert not (proj / "bench").exists()


def test_scale_section_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _bench_project(tmp_path)
    cfg = proj / "cadenza.toml"
    cfg.write_text(cfg.read_text() + '\n[scale]\nbackend = "spark"\n')
    code, _, err = run_cli(["env", "residual", "bench", proj], capsys, monkeypatch)
    assert code != 0 and "scale.backend" in err and len(err.strip().splitlines()) == 1


def test_bench_refuses_mission_episodes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    proj = make_project(tmp_path / "dog", **{"task.episodes": '"mission"'})
    code, _, err = run_cli(["env", "residual", "bench", str(proj), "--steps", "1000"], capsys, monkeypatch)
    assert code == 2 and "task.episodes" in err and len(err.strip().splitlines()) == 1
    assert not (proj / "bench").exists()


def test_bench_help_names_every_flag_and_default(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["env", "residual", "bench", "--help"], capsys, monkeypatch)
    assert code == 0
    flat = " ".join(out.split())
    for flag in ("--steps", "--seeds", "--arms", "--full-reward", "--cost-per-gpu-hour", "--cost-per-cpu-core-hour",
                 "--eval-episodes", "--workers", "--device", "--real", "--backend", "--ray-address"):
        assert flag in flat
    assert "200000" in flat and "0.05" in flat and "residual,full,sb3" in flat


def test_full_arch_controller_is_clip_of_the_policy_mean() -> None:
    torch.manual_seed(0)
    arch = full_arch(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16))
    actor = ResidualActor(arch)
    with torch.no_grad():  # make the outputs large enough that clipping matters
        actor.net[-1].weight.mul_(400.0)
    ctl = ResidualController(actor)
    obs = np.random.default_rng(0).normal(size=(64, 18))
    zeros = np.zeros((64, 3))
    a1 = ctl.act(obs, zeros)
    a2 = ctl.act(-obs, zeros)  # a jump bigger than any rate limit: must not be limited
    with torch.no_grad():
        u2 = actor(torch.as_tensor(-obs, dtype=torch.float32), None).numpy()
    assert np.abs(a1).max() == 1.0 and np.allclose(a2, np.clip(u2, -1, 1), atol=1e-6)


def test_sb3_vec_env_adapter_follows_the_vec_env_contract() -> None:
    pytest.importorskip("stable_baselines3")
    from cadenza.bench.sb3_adapter import TaskVecEnv

    task = RescueDogProxy(num_envs=4, level=1.0, horizon=6)
    env = TaskVecEnv(task)
    env.seed(7)
    obs = env.reset()
    assert obs.shape == (4, 18) and obs.dtype == np.float32 and env.render_mode is None
    ref = RescueDogProxy(num_envs=4, level=1.0, horizon=6)
    ref_obs, _ = ref.reset(seed=7)
    assert np.array_equal(obs, ref_obs)  # the seed reaches the task
    seen_trunc = False
    for _ in range(12):
        act = np.zeros((4, 3), dtype=np.float32)
        obs, rew, dones, infos = env.step(act)
        r_obs, r_rew, r_term, r_trunc, r_info = ref.step(act)
        assert np.array_equal(obs, r_obs) and np.array_equal(rew, r_rew) and rew.dtype == np.float32
        assert np.array_equal(dones, r_term | r_trunc)
        for i in range(4):
            if dones[i]:
                assert np.array_equal(infos[i]["terminal_observation"], r_info["final_obs"][i])
                assert infos[i]["TimeLimit.truncated"] == bool(r_trunc[i] and not r_term[i])
                assert "r" in infos[i]["episode"]
                seen_trunc |= infos[i]["TimeLimit.truncated"]
            else:
                assert infos[i] == {}
    assert seen_trunc
    assert env.get_attr("num_envs") == [4] * 4 and env.env_is_wrapped(object) == [False] * 4




@pytest.mark.slow
def test_bench_real_runs_end_to_end_on_mujoco(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench --real` trains both of our arms on MuJoCo Reacher and labels everything mujoco:reacher."""
    pytest.importorskip("mujoco")
    root = tiny_reacher_project(tmp_path / "reacher-bench-tiny", eval_episodes=16, min_episodes=8)
    code, out, err = run_cli(["env", "residual", "bench", str(root), "--real", "--steps", "1024", "--seeds", "1",
                              "--arms", "residual,full", "--eval-episodes", "8", "--workers", "1"],
                             capsys, monkeypatch)
    out_dir, rep = _only_report(root)
    assert errors(rep) == [], errors(rep)[:3]
    assert code == {"RESIDUAL_WINS": 0, "RESIDUAL_LOSES": 3}.get(rep["verdict"]["outcome"], 4), err
    assert rep["real"] and rep["task"] == "mujoco:reacher"
    assert "mujoco:reacher" in (out_dir / "report.md").read_text() and "mujoco:reacher" in out
    assert "proxy" not in (out_dir / "report.md").read_text().lower()
    assert [a["id"] for a in rep["arms"]] == ["residual", "full"]
    for a in rep["arms"]:
        (run,) = a["runs"]
        assert run["env_steps"] >= 1024 and run["final"]["episodes"] == 16
        assert 0.0 <= run["final"]["success_rate"] <= 1.0
    # the base-alone reference row is measured on the same real task
    assert 0.0 < rep["base"]["success_rate"] <= 1.0
    assert (out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arm_steps_give_an_arm_kind_its_own_budget(tmp_path: Path) -> None:
    """``BenchSettings.arm_steps`` (benchmarks/sample_efficiency.py's --residual-steps): each job of those arm
    kinds gets that budget, every other arm ``--steps``; its evaluations are spaced over its own budget."""
    from cadenza.bench.arms import RESIDUAL_KINDS
    from cadenza.bench.runner import _jobs, resolve_settings
    from cadenza.project.config import load_project

    proj = load_project(_bench_project(tmp_path))
    s = resolve_settings(proj, steps=100_000, seeds=2, arms="residual,residual-sac,full,sb3-sac", workers=1)
    assert {j.steps for j in _jobs(proj, s, 1)} == {100_000}
    s.arm_steps = {k: 30_000 for k in RESIDUAL_KINDS}
    got = sorted((j.kind, j.seed, j.steps) for j in _jobs(proj, s, 1))
    assert got == sorted([(k, seed, 30_000 if k in RESIDUAL_KINDS else 100_000)
                          for k in ("residual", "residual-sac", "full", "sb3-sac") for seed in (0, 1)])


@pytest.mark.slow
def test_a_report_with_arm_budgets_records_them(tmp_path: Path) -> None:
    """A bench whose residual arm has its own budget: the run stops there, every other arm runs ``--steps``, and the
    report (schema-valid) records the budgets in its settings and says so in report.md."""
    from cadenza.bench.runner import resolve_settings, run_bench
    from cadenza.project.config import load_project

    proj = load_project(_bench_project(tmp_path))
    s = resolve_settings(proj, steps=8192, seeds=1, arms="residual,full", workers=1, eval_episodes=20)
    s.arm_steps = {"residual": 4096}  # one round of 16 envs x 256 steps
    res = run_bench(proj, s, out_root=tmp_path / "out")
    rep = res.report
    assert errors(rep) == [], errors(rep)[:3]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(rep, REPORT_SCHEMA)
    steps = {a["id"]: a["runs"][0]["env_steps"] for a in rep["arms"]}
    assert steps["residual"] == 4096 and steps["full"] == 8192
    assert rep["settings"]["arm_steps"] == {"residual": 4096}
    assert "(residual: 4,096, its evaluations spread over that budget)" in (res.out_dir / "report.md").read_text()


def test_the_sample_efficiency_script_refuses_bad_arms_in_one_line() -> None:
    """benchmarks/sample_efficiency.py: arms the bench cannot compare (no residual arm) are one line, exit non-zero."""

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_efficiency.py"), "--arms", "sb3",
                        "--steps", "1000"], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines() == ["error: --arms: the bench compares against the residual arm; include "
                                             "'residual'"]
    assert "Traceback" not in p.stderr


def test_the_robustness_script_refuses_bad_thread_counts_and_writes_nothing(tmp_path: Path) -> None:
    """benchmarks/robustness.py: a --threads (or --seeds) that is not integers is a usage line and exit 2, before
    any run starts or the JSON is written; a filter that matches no run writes a JSON with none."""

    root = Path(__file__).resolve().parents[1]
    script = str(root / "benchmarks" / "robustness.py")
    out = tmp_path / "rob.json"
    for flag in ("--threads", "--seeds"):
        p = subprocess.run([sys.executable, script, "--only", "dash-sac-50k", flag, "1,two", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 2
        assert f"error: {flag}: expected comma-separated integers, got '1,two'" in p.stderr
        assert "Traceback" not in p.stderr
        assert not out.exists()
    p = subprocess.run([sys.executable, script, "--only", "dash-sac-50k", "--threads", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)  # the group runs 1 and 2 threads: nothing to do
    assert p.returncode == 0, p.stderr
    assert "0 runs to do" in p.stdout
    assert json.loads(out.read_text())["runs"] == []


def _benchmark_module(name: str):  # benchmarks/<name>.py, imported as a module (benchmarks/ is not a package)
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_ratio_interval_is_a_bootstrap_over_seeds_with_never_ranked_last() -> None:
    se = _benchmark_module("sample_efficiency")
    # every seed alike: every resample gives the same ratio
    assert se.ratio_interval([100] * 5, [1000] * 5) == (10.0, 10.0)
    # the point ratio of the medians lies inside its interval, and the interval is deterministic for a seed
    res, scratch = [10, 50, 12, 20, 18], [1400, 800, 1600, None, 1000]
    lo, hi = se.ratio_interval(res, scratch)
    point = 1400 / 18
    assert lo < point and (hi is None or hi > point)
    assert se.ratio_interval(res, scratch) == (lo, hi)
    # a from-scratch arm that never got there on 3 of 5 seeds: most resamples have no median, no upper end
    assert se.ratio_interval(res, [1000, None, None, None, 900])[1] is None
    # a residual arm that never got there: ratio 0 in every resample
    assert se.ratio_interval([None] * 5, [1000] * 5) == (0.0, 0.0)


def test_the_sample_efficiency_script_combines_earlier_results(tmp_path: Path) -> None:
    """--from reads the arms of earlier JSONs (the first file's when one is in several), prints the ratio with its
    interval and writes nothing; a file that is not one of its results is one line and a non-zero exit."""

    se = _benchmark_module("sample_efficiency")

    def arm(name: str, residual: bool, steps: list[int | None]) -> dict:
        per_seed = [{"seed": i, "sustained_steps": s, "env_steps": 2000, "final_success": 0.9, "wall_s": 1.0,
                     "cpu_s": 1.0, "wall_s_to_threshold": None, "cpu_s_to_threshold": None}
                    for i, s in enumerate(steps)]
        reached = [s for s in steps if s is not None]
        return {"arm": name, "kind": name, "label": name, "residual": residual, "seeds": len(steps),
                "reached": len(reached), "median_steps": se.median_steps(steps), "range": [min(reached), max(reached)],
                "median_wall_s": None, "median_cpu_s": None, "final_success_median": 0.9, "per_seed": per_seed}

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"settings": {"steps": 100}, "arms": [arm("residual-sac", True, [10, 20, 10, 20, 30])]}))
    b.write_text(json.dumps({"settings": {"steps": 2000}, "arms": [arm("residual-sac", True, [99] * 5),
                                                                    arm("full", False, [1000, 800, None, 1200, 900])]}))
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "sample_efficiency.py")
    before = sorted(tmp_path.iterdir())
    p = subprocess.run([sys.executable, script, "--from", str(a), str(b)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    lo, hi = se.ratio_interval([10, 20, 10, 20, 30], [1000, 800, None, 1200, 900])
    assert "residual-sac: 50.0x fewer env steps than full" in p.stdout  # 1000 / 20: a.json's arm, not b.json's
    assert f"interval over seeds {lo:.1f}x to {'unbounded' if hi is None else f'{hi:.1f}x'}" in p.stdout
    assert f"arm 'residual-sac': from {a}, not {b}" in " ".join(p.stdout.split())
    assert sorted(tmp_path.iterdir()) == before
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arms": []}))
    p = subprocess.run([sys.executable, script, "--from", str(bad)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"error: {bad}: not a result of this script (KeyError: 'settings')"]


def test_a_run_stops_once_two_evaluations_sustain_the_rate_and_logs_each_evaluation(tmp_path: Path) -> None:
    """``Job.stop_when_sustained``: our arm stops at the review after the evaluation that made two in a row reach the
    rate, SB3's at that evaluation; ``Job.evals_log`` gets every evaluation of both as it comes, the final one too."""
    from cadenza.bench.arms import Job, run_job

    proj = _bench_project(tmp_path)
    log = tmp_path / "evals.jsonl"
    common = {"project_root": str(proj), "reward": "dense", "seed": 0, "steps": 200_000, "device": "cpu",
              "real": False, "eval_episodes": 8, "final_episodes": 8, "threads": 1, "evals_log": str(log),
              "stop_when_sustained": 0.0}  # every evaluation reaches 0%: the second one sustains it
    ours = run_job(Job(arm_id="full", kind="full", **common))
    sb3 = run_job(Job(arm_id="sb3", kind="sb3", **common))
    for r in (ours, sb3):
        assert r["env_steps"] < 200_000 and "sustained 0% on two evaluations" in r["stop_reason"]
        assert len(r["curve"]) == 3  # step 0, the first periodic evaluation, the final one where it stopped
    assert ours["env_steps"] == ours["curve"][1]["env_steps"] + 4096  # one round after the evaluation
    assert sb3["env_steps"] == sb3["curve"][1]["env_steps"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["arm"], x["point"]["env_steps"]) for x in lines] == \
        [("full", p["env_steps"]) for p in ours["curve"]] + [("sb3", p["env_steps"]) for p in sb3["curve"]]
    # without the rate, a run takes its budget
    plain = run_job(Job(arm_id="full", kind="full", **{**common, "steps": 8192, "stop_when_sustained": None,
                                                        "evals_log": None}))
    assert plain["env_steps"] == 8192 and "sustained" not in plain["stop_reason"]


@pytest.mark.slow
def test_the_sample_efficiency_script_resumes_its_finished_runs(tmp_path: Path) -> None:
    """--only-seeds runs part of the seeds and lists the rest as pending; a second call without --resume refuses in
    one line and changes nothing; --resume runs only the missing runs and keeps the finished ones as they were; a
    resume asking for other settings is one line naming the log and the setting."""

    proj = _bench_project(tmp_path)
    out = tmp_path / "res" / "se.json"
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "sample_efficiency.py")
    args = [sys.executable, script, str(proj), "--steps", "8192", "--residual-steps", "4096", "--seeds", "2",
            "--arms", "residual,full", "--eval-episodes", "8", "--workers", "1", "--out", str(out)]
    env = {**os.environ, "COLUMNS": "200", "CADENZA_NUM_THREADS": "1"}

    def call(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=900, env=env)

    p = call("--only-seeds", "1")
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["pending"] == [{"arm": "full", "seed": 0}, {"arm": "residual", "seed": 0}]
    assert "partial: 2 runs pending" in p.stdout
    runs_log, evals_log = out.with_suffix(".runs.jsonl"), out.with_suffix(".evals.jsonl")
    first = runs_log.read_text()
    assert [(r["arm"], r["seed"]) for r in map(json.loads, first.splitlines()[1:])] == [("full", 1), ("residual", 1)]
    assert {json.loads(x)["seed"] for x in evals_log.read_text().splitlines()} == {1}

    p = call()
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"error: {runs_log} holds the runs of an earlier call; --resume to continue it, --fresh to start over"]
    assert runs_log.read_text() == first

    p = call("--resume")
    assert p.returncode == 0, p.stderr
    assert "resuming: 2 finished runs" in p.stdout and "partial" not in p.stdout
    doc = json.loads(out.read_text())
    assert doc["pending"] == [] and {r["arm"]: r["seeds"] for r in doc["arms"]} == {"residual": 2, "full": 2}
    lines = runs_log.read_text().splitlines()
    assert "\n".join(lines[:3]) + "\n" == first and len(lines) == 5  # the finished runs kept as they were

    p = subprocess.run([*args[:4], "16384", *args[5:], "--resume"], capture_output=True, text=True, timeout=300,
                       env=env)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"error: {runs_log}: its runs were made with other settings: steps 8192 (now 16384); run with those, "
        "or --fresh"]
    p = call("--fresh")
    assert p.returncode == 0, p.stderr
    assert runs_log.with_name(runs_log.name + ".bak").read_text() == "\n".join(lines) + "\n"


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by whoever adopted it) does not count
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc")
def test_a_killed_bench_takes_its_workers_with_it(tmp_path: Path) -> None:
    """A bench killed outright (SIGKILL: no clean-up runs) leaves no worker training on: each worker exits once its
    parent is gone."""
    import signal
    import time

    proj = _bench_project(tmp_path)
    cadenza = Path(sys.executable).parent / "cadenza"
    p = subprocess.Popen([str(cadenza), "env", "residual", "bench", str(proj), "--steps", "2000000", "--seeds", "2",
                          "--arms", "residual", "--eval-episodes", "8", "--workers", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [c for c in _children(p.pid)
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
            time.sleep(0.2)
        assert len(workers) == 2, "the bench's two workers did not start"
        time.sleep(2)  # both are training now
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
    finally:
        if p.poll() is None:
            p.kill()


def test_the_robustness_table_shows_what_validation_ran_outside_the_budget() -> None:
    """benchmarks/robustness.py: a run's validation and scorecard env steps get a column and a median in the
    summary; a run from a report that did not count them (older JSON) leaves the cell blank."""
    mod = _benchmark_module("robustness")
    run = {"group": "dash-sac-50k", "seed": 0, "threads": 1, "verdict": "DEPLOY", "success": 0.9,
           "success_ci": [0.88, 0.92], "collision": 0.05, "collision_ci": [0.04, 0.06], "episodes": 1000, "looks": 1,
           "env_steps": 12288, "best_env_steps": 12288, "wall_s": 100.0,
           "validation_env_steps": 1_234_567, "scorecard_env_steps": 456_789}
    old = {**run, "seed": 1, "validation_env_steps": None, "scorecard_env_steps": None}
    rows = mod.table([run, old]).splitlines()
    assert "validation / scorecard env steps" in rows[0]
    assert "| 12,288 (12,288) | 1.2M / 457k | 100 s |" in rows[2]
    assert "| 12,288 (12,288) |  | 100 s |" in rows[3]
    assert mod.summary([run, old])["dash-sac-50k"]["median_validation_env_steps"] == 1_234_567


def test_the_robustness_script_can_compute_as_an_avx2_cpu_and_keeps_those_runs_apart() -> None:
    """benchmarks/robustness.py --isa avx2: a child process started with its environment computes with no
    AVX-512 kernel (torch's dispatch, numpy's), whatever this CPU has; its runs get their own table label and
    summary entry beside the native runs of the same group, seed and threads."""
    mod = _benchmark_module("robustness")
    probe = ("import torch; from numpy._core._multiarray_umath import __cpu_features__ as f; "
             "print(torch.backends.cpu.get_cpu_capability(), f.get('X86_V4', False))")
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **mod.ISA_ENV["avx2"]},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] in ("AVX2", "DEFAULT") and out[1] == "False", out  # AVX-512 off; lower where the CPU lacks AVX2
    run = {"group": "dash-sac-50k", "seed": 0, "threads": 1, "verdict": "DEPLOY", "success": 0.9,
           "success_ci": [0.88, 0.92], "collision": 0.05, "collision_ci": [0.04, 0.06], "episodes": 1000, "looks": 1,
           "env_steps": 12288, "best_env_steps": 12288, "wall_s": 100.0}
    avx2 = {**run, "isa": "avx2", "verdict": "NEEDS_DATA", "best_env_steps": 49152}
    rows = mod.table([avx2, run]).splitlines()
    assert rows[2].startswith("| dash-sac-50k | 0 | 1 | DEPLOY")  # native first: a run from before --isa is native
    assert rows[3].startswith("| dash-sac-50k (avx2) | 0 | 1 | NEEDS_DATA")
    s = mod.summary([run, avx2])
    assert s["dash-sac-50k"]["deploy"] == 1 and s["dash-sac-50k (avx2)"]["deploy"] == 0
