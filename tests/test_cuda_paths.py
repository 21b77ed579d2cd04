"""Training and acting with the residual on a CUDA device (`--device cuda`).

These run only where torch sees a GPU (CI has none; a device session runs them with
``pytest -q tests/test_cuda_paths.py``). The env, the base and the replay stay on the CPU; the actor and
the critics live on the GPU, so every crossing (acting, validation cards, replay batches, checkpoints,
the saved policy) is exercised. Both learners once crashed on their first validation card there
(``Expected all tensors to be on the same device``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("algorithm", ["ppo", "sac"])
def test_train_on_cuda_resumes_and_scores(tmp_path: Path, algorithm: str) -> None:
    train_resume_and_act(tmp_path, algorithm, "cuda")


def train_resume_and_act(tmp_path: Path, algorithm: str, device: str) -> None:
    """Train a few rounds on ``device``, interrupted after the first and resumed, then act with the saved policy
    loaded on ``device`` and on the CPU (also runs on a CPU: ``device="cpu"``)."""
    from cadenza.governance.governor import LocalGovernor
    from cadenza.governance.registry import Registry
    from cadenza.project.config import load_project
    from cadenza.residual.policy import ResidualController, load_policy
    from cadenza.residual.train import train_residual
    from tests.conftest import make_project

    root = make_project(tmp_path / "dog", **{
        "residual.algorithm": f'"{algorithm}"', "task.num_envs": "16", "residual.hidden_dim": "32",
        "governance.eval_episodes": "40", "governance.min_episodes": "20", "governance.max_eval_episodes": "80"})
    proj = load_project(root)
    gov = LocalGovernor(validation_episodes=40)
    def stop_after_one(row: dict, plan: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a checkpoint written from the GPU ...
        train_residual(proj, steps=8192, seed=0, device=device, governor=gov, on_round=stop_after_one)
    res = train_residual(proj, steps=8192, seed=0, device=device, governor=gov)  # ... resumes on it
    report = json.loads(res.report_path.read_text())
    assert report["accel"]["device"] == device and report["algorithm"] == algorithm
    assert res.resumed_from == 1 and report["verdict"] in ("DEPLOY", "BLOCK", "NEEDS_DATA")
    assert any("val_success" in row for row in report["history"])  # validation cards ran on the GPU's actor

    policy = Registry(root).path("residual", report["version"], "policy.pt")
    for where in (device, "cpu"):  # the saved policy acts from either device
        actor, _ = load_policy(policy, where)
        obs = np.zeros((3, actor.arch.obs_dim), np.float32)
        delta, _gate = ResidualController(actor).raw(obs, np.zeros((3, actor.arch.act_dim)))
        assert isinstance(delta, np.ndarray) and delta.shape == (3, actor.arch.act_dim)
