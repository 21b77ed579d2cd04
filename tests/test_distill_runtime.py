"""The student's exports and the onboard runtime: parity, bounds, no torch, clear errors on bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cadenza.distill.export import FP32_PARITY_TOL, export_onnx, load_weights, parity, quantize_int8, save_weights
from cadenza.distill.runtime import (
    FP32_NAME,
    INT8_NAME,
    WEIGHTS_NAME,
    NumpyStudent,
    OnnxStudent,
    load_student,
    read_safetensors,
)
from cadenza.distill.student import Student, StudentArch
from cadenza.errors import ArtefactError


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Student, dict[str, Path], np.ndarray]:
    """A student with a non-trivial normaliser and narrowed bounds, exported three ways."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    s = Student(StudentArch(obs_dim=18, act_dim=3, hidden_dim=32, low=-0.8, high=0.9))
    with torch.no_grad():
        s.w2.mul_(8.0)  # make the bounds bite on part of the observations
    s.set_normaliser(rng.normal(0, 2.0, 18), rng.uniform(0.1, 3.0, 18))
    d = tmp_path_factory.mktemp("student")
    files = {"fp32": d / FP32_NAME, "int8": d / INT8_NAME, "numpy": d / WEIGHTS_NAME}
    save_weights(s, files["numpy"])
    export_onnx(s, files["fp32"])
    quantize_int8(files["fp32"], files["int8"])
    obs = (rng.normal(0, 2.0, (2000, 18)) * rng.uniform(0.1, 3.0, 18)).astype(np.float32)
    return s, files, obs


def test_fp32_exports_match_the_torch_student(exported) -> None:
    s, files, obs = exported
    p = parity(s, obs, files)
    assert p["fp32"] <= FP32_PARITY_TOL
    assert p["numpy"] <= FP32_PARITY_TOL
    assert 0.0 < p["int8"] < 0.5  # quantised: close, not equal


def test_normaliser_and_bounds_are_inside_every_export(exported) -> None:
    s, files, obs = exported
    g = onnx.load(str(files["fp32"])).graph
    assert [i.name for i in g.input] == ["obs"] and [o.name for o in g.output] == ["action"]
    assert {"obs_mean", "obs_inv_std"} <= {t.name for t in g.initializer}
    extreme = np.full((4, 18), 1e6, dtype=np.float32) * np.array([[1], [-1], [1e-3], [-1e-3]], dtype=np.float32)
    with torch.no_grad():
        ref = s(torch.from_numpy(extreme)).numpy()
        raw = s.raw(torch.from_numpy(obs)).numpy()
    assert (raw > 0.9).any() or (raw < -0.8).any()  # the bounds are active on these observations
    for path in files.values():
        rt = load_student(path)
        a = rt.act(obs)
        assert a.min() >= -0.8 - 1e-6 and a.max() <= 0.9 + 1e-6
        assert np.isfinite(rt.act(extreme)).all()
        if path.suffix == ".safetensors" or path.name == FP32_NAME:
            assert np.abs(rt.act(extreme) - ref).max() <= FP32_PARITY_TOL


def test_single_observation_path_equals_the_batched_one(exported) -> None:
    _, files, obs = exported
    for path in files.values():
        rt = load_student(path)
        batch = rt.act(obs[:16])
        one = np.stack([rt.act(o) for o in obs[:16]])
        assert one.shape == batch.shape == (16, 3)
        assert np.abs(rt.act(obs[:1]) - batch[:1]).max() <= 1e-6
        assert np.abs(one - batch).max() <= 1e-6
        first = rt.act(obs[0]).copy()
        rt.act(obs[1])
        assert np.array_equal(first, rt.act(obs[0]))  # no state leaks between calls


def test_safetensors_reader_agrees_with_the_safetensors_library(exported) -> None:
    from safetensors.numpy import load_file

    s, files, _ = exported
    ours, meta = read_safetensors(files["numpy"])
    theirs = load_file(str(files["numpy"]))
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert json.loads(meta["arch"]) == s.arch.as_dict()
    assert load_weights(files["numpy"]).arch == s.arch


def test_runtime_imports_no_torch(exported) -> None:
    _, files, _ = exported
    code = (
        "import sys, numpy as np\n"
        "from cadenza.distill.runtime import OnnxStudent, NumpyStudent\n"
        "obs = np.zeros(18, dtype=np.float32)\n"
        f"a = OnnxStudent({str(files['int8'])!r}).act(obs)\n"
        f"b = NumpyStudent({str(files['numpy'])!r}).act(obs)\n"
        "assert a.shape == b.shape == (3,)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wrong_observation_shape_is_a_clear_error(exported) -> None:
    _, files, _ = exported
    for path in files.values():
        with pytest.raises(ValueError, match=r"observations of shape \(18,\)"):
            load_student(path).act(np.zeros(17))


def test_missing_student_files_are_clear_errors(tmp_path: Path) -> None:
    for name in (FP32_NAME, WEIGHTS_NAME):
        with pytest.raises(ArtefactError, match=f"{tmp_path / name}: no such student"):
            load_student(tmp_path / name)
    with pytest.raises(ArtefactError, match=r"ends in \.onnx or \.safetensors"):
        load_student(tmp_path / "student.pt")


def test_corrupt_student_files_are_clear_errors(exported, tmp_path: Path) -> None:
    _, files, _ = exported
    bad_onnx = tmp_path / FP32_NAME
    bad_onnx.write_bytes(files["fp32"].read_bytes()[:500])
    with pytest.raises(ArtefactError, match=f"{bad_onnx}: not a loadable ONNX student"):
        OnnxStudent(bad_onnx)
    bad_st = tmp_path / WEIGHTS_NAME
    bad_st.write_bytes(files["numpy"].read_bytes()[:-100])
    with pytest.raises(ArtefactError, match=f"{bad_st}: not a readable safetensors file"):
        NumpyStudent(bad_st)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ArtefactError, match="not a readable safetensors file"):
        NumpyStudent(junk)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(ArtefactError, match="not a cadenza student"):
        NumpyStudent(foreign)
    with pytest.raises(ArtefactError, match="not a cadenza student"):
        load_weights(foreign)
