"""A/B through the safe runtime: planning, the run on the real proxy, the CLI, the project loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.base.rescue_dog import RescueDogBase
from cadenza.errors import CadenzaError
from cadenza.governance.registry import Registry
from cadenza.project.config import load_project
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import save_policy
from cadenza.runtime import SafeRuntime
from cadenza.runtime.ab import plan_episodes, run_ab
from cadenza.runtime.project import from_project
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy
from tests.conftest import run_cli


def _actor(hidden: int = 32, seed: int = 0) -> ResidualActor:
    torch.manual_seed(seed)
    actor = ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=hidden))
    with torch.no_grad():
        torch.nn.init.normal_(actor.net[-1].weight, std=0.2)
    return actor


@pytest.mark.parametrize("robots", [2, 7, 10, 100])
def test_plan_gives_each_arm_exactly_its_episodes(robots: int) -> None:
    for n in range(1, 80):
        m, planned = plan_episodes(n, robots)
        assert m % 2 == 0 and m <= max(2, robots) and len(planned) == m
        on = sum(1 for j in range(m) for e in range(planned[j]) if (j + e) % 2 == 0)
        off = sum(planned) - on
        assert on == n and off == n, (n, robots, planned)
        assert max(planned) - min(planned) <= 1


def test_plan_refuses_zero_episodes() -> None:
    with pytest.raises(ValueError, match="episodes per arm"):
        plan_episodes(0, 10)


def test_ab_on_the_proxy_counts_both_arms_and_switches_by_episode() -> None:
    base, actor = RescueDogBase(), _actor()
    made: list[SafeRuntime] = []

    def make_runtime() -> SafeRuntime:
        made.append(SafeRuntime.for_residual(base, actor, budget_us=1e6))
        return made[-1]

    res = run_ab(lambda n: RescueDogProxy(num_envs=n, level=1.0), base, make_runtime, episodes_per_arm=9,
                 seed=3, robots=4)
    assert res.robots == 4 and len(made) == 4
    assert res.on.episodes == 9 and res.off.episodes == 9
    assert res.task == "proxy" and res.level == 1.0
    h = res.health
    # every step of an "off" episode ran with the switch off, every "on" step asked the residual
    assert h.disabled_steps == res.off.length_sum
    assert h.corrected_steps + h.fallback_total == res.on.length_sum
    assert h.steps == res.on.length_sum + res.off.length_sum
    assert h.mean_abs_delta > 0
    d = res.as_dict()
    lo, hi = d["arms"]["on"]["success_interval"]
    assert 0.0 <= lo <= d["arms"]["on"]["success_rate"] <= hi <= 1.0
    dlo, dhi = d["difference"]["interval"]
    assert dlo <= d["difference"]["on_minus_off"] <= dhi
    json.dumps(d)  # the report is plain JSON


def test_ab_is_reproducible() -> None:
    base, actor = RescueDogBase(), _actor(seed=1)

    def once() -> tuple[int, int]:
        r = run_ab(lambda n: RescueDogProxy(num_envs=n, level=1.0), base,
                   lambda: SafeRuntime.for_residual(base, actor, budget_us=1e6), episodes_per_arm=6, seed=9, robots=4)
        return r.on.successes, r.off.successes

    assert once() == once()


def _registered(project_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "candidate.pt"
    save_policy(_actor(), path)
    return path


def test_cli_eval_ab_reports_both_arms(small_project: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    pol = _registered(small_project, tmp_path)
    code, out, err = run_cli(["env", "residual", "eval", small_project, "--policy", pol, "--ab", "--episodes", "20"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "A/B [proxy]" in out and "residual on" in out and "base alone" in out and "on - off" in out
    assert "fallbacks" in out and "latency p50 / p99" in out
    report = json.loads((small_project / "residual" / "ab_report.json").read_text())
    assert report["arms"]["on"]["episodes"] == 20 and report["arms"]["off"]["episodes"] == 20
    assert report["version"] == "v0001" and report["task"] == "proxy"
    assert report["runtime_health"]["disabled_steps"] == report["arms"]["off"]["length_sum"]
    reg = Registry(small_project)
    assert reg.baseline("residual") is None and reg.last_verdict("residual", "v0001") is None


def test_cli_eval_ab_refuses_promote(small_project: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["env", "residual", "eval", small_project, "--ab", "--promote"], capsys, monkeypatch)
    assert code == 2  # flags that do not go together: a usage error, refused before anything is loaded
    assert "--ab" in err and "--promote" in err and len(err.strip().splitlines()) == 1


def test_cli_eval_help_documents_ab(capsys, monkeypatch) -> None:
    code, out, _ = run_cli(["env", "residual", "eval", "--help"], capsys, monkeypatch)
    text = re.sub(r"[\s│]+", " ", out)  # rich wraps the help inside a box
    assert code == 0 and "--ab" in text and "by episode" in text and "per arm" in text


def test_from_project_needs_a_promoted_residual(small_project: Path, tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="no promoted residual"):
        from_project(small_project)
    reg = Registry(small_project)
    version = reg.register("residual", {"policy.pt": _registered(small_project, tmp_path)})
    assert from_project(small_project, version=version).budget_us == pytest.approx(2000.0)  # 10% of 50 Hz
    rt = from_project(small_project, version=version, budget_us=1e6)  # no timeouts on a loaded CI machine
    proj = load_project(small_project)
    task = RescueDogProxy(num_envs=1, level=proj.config.task.level)
    obs, _ = task.reset(seed=0)
    a = rt.step(obs[0])
    assert a.shape == (3,) and np.all(np.abs(a) <= 1.0) and rt.last_cause == "corrected"
