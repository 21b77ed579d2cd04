"""The acceleration layer: decision rules for any hardware (GPU branches included), and what
``configure`` / ``autocast`` / ``maybe_compile`` really do on this machine's torch."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cadenza.accel import Workload, autocast, configure, maybe_compile, pick_device
from cadenza.accel.decisions import (
    BF16_MIN_MACS,
    COMPILE_BEST_GAIN,
    COMPILE_FIRST_CALL_S,
    COMPILE_MIN_BATCH,
    decide_bf16,
    decide_compile,
    decide_matmul_precision,
    decide_threads,
)
from cadenza.accel.hardware import Hardware, cgroup_cpus, cpuinfo_cores
from cadenza.errors import CadenzaError

SRC = Path(__file__).resolve().parent.parent / "src" / "cadenza"

CPU = Hardware(device="cpu", device_name="test cpu", physical_cores=8, usable_cpus=16, compiler="/usr/bin/g++")
H100 = Hardware(device="cuda", device_name="H100", physical_cores=16, usable_cpus=16, cuda_capability=(9, 0),
                bf16=True, tf32=True, triton=True)
T4 = Hardware(device="cuda", device_name="T4", physical_cores=4, usable_cpus=4, cuda_capability=(7, 5),
              bf16=False, tf32=False, triton=True)
MPS = Hardware(device="mps", device_name="Apple MPS", physical_cores=8, usable_cpus=8)

SMALL = Workload("ppo_update", params=72_000, batch=2048, expected_calls=1000)  # the rescue-dog residual
LARGE = Workload("lora", params=22_000_000, batch=2048, expected_calls=50_000)  # an encoder over 2048 tokens


# ------------------------------------------------------------------ threads


def test_threads_follow_physical_cores_capped_by_what_the_process_may_use() -> None:
    intra, inter = decide_threads(CPU, {})
    assert intra.value == 8 and "physical cores (8)" in intra.reason
    assert inter.value == 1
    intra, _ = decide_threads(replace(CPU, usable_cpus=3), {})
    assert intra.value == 3 and "(3)" in intra.reason


def test_threads_leave_the_cores_other_processes_keep_busy() -> None:
    idle, _ = decide_threads(CPU, {}, load1=1.0)  # only this process
    assert idle.value == 8 and "free" in idle.reason
    busy, _ = decide_threads(CPU, {}, load1=4.0)  # three other runnable processes
    assert busy.value == 5 and "other processes" in busy.reason and "4.0" in busy.reason
    swamped, _ = decide_threads(replace(CPU, physical_cores=2, usable_cpus=2), {}, load1=7.0)
    assert swamped.value == 1
    pinned, _ = decide_threads(CPU, {"CADENZA_NUM_THREADS": "6"}, load1=40.0)
    assert pinned.value == 6  # the user's pin wins over the load


@pytest.mark.parametrize("var", ["CADENZA_NUM_THREADS", "OMP_NUM_THREADS"])
def test_threads_respect_the_environment(var: str) -> None:
    intra, _ = decide_threads(CPU, {var: "2"})
    assert intra.value == 2 and var in intra.reason
    intra, _ = decide_threads(CPU, {var: "lots"})  # not a number: ignored
    assert intra.value == 8


def test_cadenza_threads_win_over_omp() -> None:
    intra, _ = decide_threads(CPU, {"OMP_NUM_THREADS": "1", "CADENZA_NUM_THREADS": "4"})
    assert intra.value == 4


def test_cpuinfo_and_cgroup_parsing() -> None:
    text = "\n".join(f"processor : {i}\nphysical id : {i // 4}\ncore id : {i % 4 // 2}\n" for i in range(8))
    assert cpuinfo_cores(text) == 4  # 2 sockets x 2 cores, 2 hyper-threads each
    assert cpuinfo_cores("") == 0
    assert cgroup_cpus("200000 100000") == 2
    assert cgroup_cpus("50000 100000") == 1
    assert cgroup_cpus("max 100000") is None
    assert cgroup_cpus("garbage") is None


# ------------------------------------------------------------------ matmul precision


def test_matmul_precision_high_only_where_tf32_exists() -> None:
    assert decide_matmul_precision(H100).value == "high"
    assert "9.0" in decide_matmul_precision(H100).reason
    t4 = decide_matmul_precision(T4)
    assert t4.value == "highest" and "7.5" in t4.reason
    assert decide_matmul_precision(CPU).value == "highest"
    assert decide_matmul_precision(MPS).value == "highest"


# ------------------------------------------------------------------ bf16


def test_bf16_on_a_gpu_only_when_the_model_is_large_enough() -> None:
    small = decide_bf16(H100, SMALL, {})
    assert small.value is False and "too small" in small.reason
    large = decide_bf16(H100, LARGE, {})
    assert large.value is True and "bf16" in large.reason
    edge = Workload("x", params=BF16_MIN_MACS // 3, batch=1, training=True)
    assert edge.macs_per_call < BF16_MIN_MACS and decide_bf16(H100, edge, {}).value is False


def test_bf16_refused_without_hardware_support() -> None:
    assert decide_bf16(T4, LARGE, {}).value is False
    cpu = decide_bf16(CPU, LARGE, {})
    assert cpu.value is False and "avx512_bf16" in cpu.reason
    assert decide_bf16(MPS, LARGE, {}).value is False
    assert decide_bf16(replace(CPU, bf16=True), LARGE, {}).value is True  # a CPU with AMX / avx512_bf16


def test_bf16_overrides_and_no_workload() -> None:
    assert decide_bf16(H100, LARGE, {"CADENZA_BF16": "0"}).value is False
    assert decide_bf16(H100, SMALL, {"CADENZA_BF16": "1"}).value is True
    assert decide_bf16(CPU, SMALL, {"CADENZA_BF16": "1"}).value is False  # forcing cannot add hardware
    assert decide_bf16(H100, None, {}).value is False


# ------------------------------------------------------------------ torch.compile


def test_compile_skipped_with_the_reason() -> None:
    no_cc = decide_compile(replace(CPU, compiler=None), SMALL, {}, eager_call_s=1.0)
    assert no_cc.value is False and "C++ compiler" in no_cc.reason
    no_triton = decide_compile(replace(H100, triton=False), SMALL, {}, eager_call_s=1.0)
    assert no_triton.value is False and "Triton" in no_triton.reason
    no_dynamo = decide_compile(replace(CPU, dynamo=False), SMALL, {}, eager_call_s=1.0)
    assert no_dynamo.value is False and "not supported" in no_dynamo.reason
    assert decide_compile(MPS, SMALL, {}, eager_call_s=1.0).value is False
    rollout = Workload("rollout", params=72_000, batch=64, expected_calls=10**6, training=False)
    small = decide_compile(H100, rollout, {}, eager_call_s=1.0)
    assert small.value is False and "small batches" in small.reason and str(COMPILE_MIN_BATCH) in small.reason


def test_compile_weighs_the_run_length_against_the_first_call() -> None:
    short = decide_compile(CPU, SMALL, {}, eager_call_s=0.005)  # 1000 calls x 5 ms: seconds of work
    assert short.value is False and "first-call cost" in short.reason
    long = decide_compile(CPU, replace(SMALL, expected_calls=200_000), {}, eager_call_s=0.005)
    assert long.value is True
    unknown = decide_compile(H100, SMALL, {}, eager_call_s=None)
    assert unknown.value is False and "unknown" in unknown.reason
    # the boundary is the first-call cost itself
    first = COMPILE_FIRST_CALL_S["cpu"]
    calls = 10_000
    per_call = first / calls / COMPILE_BEST_GAIN["cpu"]
    assert decide_compile(CPU, replace(SMALL, expected_calls=calls), {}, eager_call_s=per_call * 1.01).value is True
    assert decide_compile(CPU, replace(SMALL, expected_calls=calls), {}, eager_call_s=per_call * 0.99).value is False


def test_compile_overrides() -> None:
    assert decide_compile(H100, LARGE, {"CADENZA_COMPILE": "0"}, eager_call_s=1.0).value is False
    assert decide_compile(CPU, SMALL, {"CADENZA_COMPILE": "1"}).value is True
    forced_no_cc = decide_compile(replace(CPU, compiler=None), SMALL, {"CADENZA_COMPILE": "1"})
    assert forced_no_cc.value is False  # forcing cannot add a compiler


# ------------------------------------------------------------------ on this machine


def test_pick_device_errors_are_one_line() -> None:
    with pytest.raises(CadenzaError, match="expected one of"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CadenzaError, match="no CUDA device"):
            pick_device("cuda")
    assert pick_device("cpu") == "cpu"


def test_configure_applies_and_records_every_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("CADENZA_NUM_THREADS", "1")
        s = configure("cpu", workload=SMALL)
        assert torch.get_num_threads() == 1 == s.threads
        assert torch.get_float32_matmul_precision() == s.matmul_precision == "highest"
        assert s.bf16_autocast is False  # the rescue-dog update is far too small for bf16 on any CPU
        assert set(s.reasons) == {"threads", "interop_threads", "matmul_precision", "bf16_autocast"}
        assert s.workload == SMALL.as_dict() and s.torch_version == torch.__version__
        d = json.loads(json.dumps(s.as_dict()))
        assert d["device"] == "cpu" and d["reasons"]["threads"].startswith("CADENZA_NUM_THREADS=1")
        assert "threads" in s.summary()
    finally:
        torch.set_num_threads(before)


def test_autocast_follows_the_decision() -> None:
    s = configure("cpu")
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with autocast(s):
        assert lin(x).dtype == torch.float32  # no bf16 decided: fp32
    s.bf16_autocast = True  # as configure would record it on bf16 hardware
    with autocast(s):
        assert lin(x).dtype == torch.bfloat16
    with autocast(None):  # code paths built without settings
        assert lin(x).dtype == torch.float32


def test_maybe_compile_skips_small_batches_and_records_why() -> None:
    s = configure("cpu")
    net = torch.nn.Sequential(torch.nn.Linear(21, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    out = maybe_compile(net, s, name="rollout", batch=64, expected_calls=10**6, training=False, env={})
    assert out is net
    rec = s.compile["rollout"]
    assert rec["applied"] is False and "small batches" in rec["reason"]
    out = maybe_compile(net, s, name="update", batch=4096, expected_calls=10, env={},
                        example_inputs=(torch.randn(4096, 21),))
    assert out is net and s.compile["update"]["eager_call_ms"] > 0
    assert "first-call cost" in s.compile["update"]["reason"] or "C++" in s.compile["update"]["reason"]
    assert "update off" in s.summary()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_maybe_compile_forced_gives_the_same_numbers() -> None:
    s = configure("cpu")
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    comp = maybe_compile(net, s, name="tiny", batch=8, expected_calls=1, env={"CADENZA_COMPILE": "1"})
    assert comp is not net and s.compile["tiny"]["applied"] is True
    x = torch.randn(8, 6)
    torch.testing.assert_close(comp(x), net(x))


def test_no_other_module_sets_the_knobs() -> None:
    """One place decides: torch's thread / precision / compile / autocast knobs only in cadenza.accel."""
    knob = re.compile(r"torch\.(set_num_threads|set_num_interop_threads|set_float32_matmul_precision|compile|"
                      r"autocast)\(|allow_tf32\s*=")
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "accel" not in p.parts and knob.search(p.read_text())]
    assert offenders == []
