"""Governed training on the real simulator: the governor's MuJoCo plan and `train --real` end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cadenza.governance.governor import MUJOCO_LOG_STD, LocalGovernor, TaskProfile
from tests.conftest import run_cli, tiny_reacher_project


def profile(label: str, use_base: bool = True) -> TaskProfile:
    return TaskProfile(obs_dim=10, act_dim=2, horizon=50, num_envs=32, device="cpu", budget_steps=200_000,
                       target_level=1.0, use_base=use_base, label=label, control_hz=50.0)


def test_the_governor_plans_mujoco_residuals_apart_and_leaves_the_rest_alone() -> None:
    """On MuJoCo a residual explores wider and trains at the target level from the start; the proxy's
    plan and a from-scratch policy's plan are untouched."""
    gov = LocalGovernor()
    proxy, real = gov.plan(profile("proxy")), gov.plan(profile("mujoco:reacher"))
    full_proxy, full_real = gov.plan(profile("proxy", use_base=False)), gov.plan(profile("mujoco:reacher", False))
    assert proxy.hyperparameters["init_log_std"] == -0.5 and proxy.curriculum[0] == (0, 0.5)
    assert proxy.curriculum[-1][1] == 1.0 and len(proxy.curriculum) == 4
    assert real.hyperparameters["init_log_std"] == -0.25 and real.curriculum == [(0, 1.0)]
    assert full_real.as_dict() == full_proxy.as_dict()
    same = {k: v for k, v in real.hyperparameters.items() if k != "init_log_std"}
    assert same == {k: v for k, v in proxy.hyperparameters.items() if k != "init_log_std"}
    assert (real.rounds, real.budget_steps) == (proxy.rounds, proxy.budget_steps)


def test_sac_explores_as_wide_as_ppo_on_mujoco_and_keeps_its_own_default_on_the_proxy() -> None:
    """SAC's residual on MuJoCo starts at PPO's MuJoCo log std (the real bases absorb small nudges); on the proxy
    the plan leaves SACConfig's -1.0, and SAC trains at the target level on both."""
    from cadenza.residual.sac import SACConfig

    gov = LocalGovernor()
    sac_real = gov.plan(replace(profile("mujoco:reacher"), algorithm="sac"))
    sac_proxy = gov.plan(replace(profile("proxy"), algorithm="sac"))
    assert sac_real.hyperparameters["init_log_std"] == MUJOCO_LOG_STD == -0.25
    assert gov.plan(profile("mujoco:reacher")).hyperparameters["init_log_std"] == MUJOCO_LOG_STD
    assert "init_log_std" not in sac_proxy.hyperparameters and SACConfig().init_log_std == -1.0
    assert SACConfig(**sac_real.hyperparameters).init_log_std == -0.25
    assert sac_real.curriculum == sac_proxy.curriculum == [(0, 1.0)]


@pytest.mark.slow
def test_train_real_end_to_end_says_mujoco_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tiny_reacher_project(tmp_path / "reacher-tiny", eval_episodes=24, min_episodes=16)
    code, out, err = run_cli(["env", "residual", "train", root, "--real", "--steps", "2048", "--seed", "1"],
                             capsys, monkeypatch)
    verdict = {0: "DEPLOY", 3: "BLOCK", 4: "NEEDS_DATA"}[code]  # a tiny budget decides nothing in particular
    assert "mujoco:reacher" in out and "proxy" not in out and not err
    report = json.loads((root / "residual" / "train_report_real.json").read_text())
    assert report["task"] == report["scorecard"]["task"] == "mujoco:reacher"
    card = report["scorecard"]
    assert report["env_steps"] == 2048 and card["episodes"] in (24, 48, 72)  # sequential looks of 24, cap 72
    assert card["episodes"] == card["looks"][-1]["episodes"] and card["block"] == 0
    assert report["plan"]["hyperparameters"]["init_log_std"] == -0.25
    assert report["verdict"] == verdict
    assert (root / "residual" / "learning_curve_real.png").stat().st_size > 1000
    assert not (root / "residual" / "train_report.json").exists()  # the proxy's report is another file
