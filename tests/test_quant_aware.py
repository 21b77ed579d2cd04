"""The torch mirror of the int8 export, and int8-aware fine-tuning on the real proxy and base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.distill.dagger import DaggerConfig, load_teacher, run_dagger
from cadenza.distill.export import export_onnx, quantize_int8
from cadenza.distill.quant_aware import fake_quant_activation, fake_quant_weight, per_channel_layer, quantized
from cadenza.distill.runtime import OnnxStudent
from cadenza.distill.student import Student, StudentArch
from cadenza.project.config import load_project
from cadenza.tasks.factory import make_task
from tests.conftest import make_project


def _student(layers: int, seed: int = 0) -> Student:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    s = Student(StudentArch(obs_dim=18, act_dim=3, hidden_dim=32, layers=layers, low=-0.8, high=0.9))
    with torch.no_grad():
        s.w0[:, 5].mul_(6.0)  # one output channel with a much wider range than the others
    s.set_normaliser(rng.normal(0, 2.0, 18), rng.uniform(0.1, 3.0, 18), ignore=[14, 15, 16])
    return s.eval()


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_the_mirror_computes_what_the_int8_file_computes(tmp_path: Path, layers: int) -> None:
    s = _student(layers)
    export_onnx(s, tmp_path / "s.onnx")
    quantize_int8(tmp_path / "s.onnx", tmp_path / "s.int8.onnx")
    rng = np.random.default_rng(1)
    obs = (rng.normal(0, 2.0, (500, 18)) * rng.uniform(0.1, 3.0, 18)).astype(np.float32)
    onboard = OnnxStudent(tmp_path / "s.int8.onnx").act(obs)
    with torch.no_grad():
        mirror = quantized(s, torch.from_numpy(obs)).numpy()
        fp32 = s(torch.from_numpy(obs)).numpy()
    assert np.abs(fp32 - onboard).max() > 5e-3  # the int8 file really rounds (measured 0.006-0.03) ...
    assert np.abs(mirror - onboard).max() < 1e-5  # ... and the mirror rounds alike (measured 1e-7 to 3e-7)


def test_scales_follow_the_export_scheme() -> None:
    assert [per_channel_layer(i, 3) for i in range(3)] == [True, False, True]
    assert per_channel_layer(0, 1)
    w = torch.tensor([[0.0, -2.0], [1.0, 0.5]])
    per_col = fake_quant_weight(w, per_channel=True)
    whole = fake_quant_weight(w, per_channel=False)
    assert torch.allclose(per_col[:, 0], torch.tensor([0.0, 1.0]))  # column 0 has its own scale: exact
    assert not torch.allclose(whole, w)  # one scale for [-2, 1]: 1.0 and 0.5 are not on the grid


def test_activations_get_one_scale_per_observation_and_gradients_pass_through() -> None:
    h = torch.tensor([[0.1, 0.2, 0.3], [10.0, -5.0, 0.3]], requires_grad=True)
    q = fake_quant_activation(h)
    q.sum().backward()
    q = q.detach()
    assert abs(float(q[0, 2]) - 0.3) < 0.3 / 255  # a small row keeps a fine grid
    assert abs(float(q[1, 2]) - 0.3) > 0.3 / 255  # the wide row rounds 0.3 coarsely
    assert torch.equal(h.grad, torch.ones_like(h))  # straight-through


def test_int8_aware_epochs_lower_the_int8_error_on_held_out_states(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path / "dog", **{"task.num_envs": "16"}))
    teacher = load_teacher(project, kind="base", obs_dim=18, act_dim=3)
    arch = StudentArch(obs_dim=18, act_dim=3, hidden_dim=16)
    cfg = DaggerConfig(rounds=2, envs=16, epochs=3, seed=2, quant_aware_epochs=4)
    res = run_dagger(lambda n: make_task(project, num_envs=n), teacher, arch, cfg)
    q = res.quant_aware
    assert q is not None and q["epochs"] == 4 and res.config["quant_aware_epochs"] == 4
    assert q["val_mse_after"]["int8"] < q["val_mse_before"]["int8"]
    assert res.rounds[-1].val_mse == q["val_mse_after"]["fp32"]
    plain = run_dagger(lambda n: make_task(project, num_envs=n), teacher, arch,
                       DaggerConfig(rounds=2, envs=16, epochs=3, seed=2))
    assert plain.quant_aware is None
