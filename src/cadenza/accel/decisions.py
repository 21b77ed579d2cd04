"""The rules: which acceleration knob is worth turning for this hardware and this workload.

Pure functions of a :class:`~cadenza.accel.hardware.Hardware` record, a :class:`Workload` and the
environment, each returning its choice and the reason in words (the reason is written into every
report). Nothing here touches torch, so the GPU branches are tested on a CPU-only machine.

User overrides (environment, read only here): ``CADENZA_NUM_THREADS`` (or ``OMP_NUM_THREADS``) pins
the intra-op threads (otherwise they follow the free physical cores); ``CADENZA_BF16=0|1`` and
``CADENZA_COMPILE=0|1`` force autocast and ``torch.compile`` off or on (forcing on still refuses
hardware that cannot do it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from cadenza.accel.hardware import Hardware

# bf16 autocast pays once a call's matmul time outweighs the fixed cost around it (kernel launches,
# casts): a 2-layer 256-wide MLP on 2048 rows is ~0.4 G multiply-accumulates, about 10 us of H100
# tensor-core time against ~100 us of launches, so halving the matmul gains nothing. From about 4 G
# (transformer encoders, large students) it is a real share of the call. A starting point to
# calibrate on the GPU (docs/accel.md, H100 table).
BF16_MIN_MACS = 1 << 32

# torch.compile: below this many rows per call the time is Python and dispatch, which compile does
# not remove (CUDA graphs would, but they need static shapes the rollout does not have).
COMPILE_MIN_BATCH = 256
# First-call cost of compiling a small MLP (forward + backward), seconds. CPU: benchmarks/accel.py
# measured 20-30 s for the PPO update's actor and critic (cold inductor cache) on the shared 2-core
# development machine (results/accel.json); CUDA: a placeholder until the H100 run fills it in.
COMPILE_FIRST_CALL_S = {"cpu": 25.0, "cuda": 40.0, "mps": 60.0}
# The largest share of eager time compile can be expected to save on a small MLP (fusing bias, tanh
# and their backward); the estimate uses it, so compile is chosen only when even this is enough.
# CPU: benchmarks/accel.py measured 1.05x on the PPO update and slowdowns on rollout forwards, so 10%
# is generous; CUDA: a placeholder until the H100 run.
COMPILE_BEST_GAIN = {"cpu": 0.10, "cuda": 0.30, "mps": 0.30}


@dataclass(frozen=True)
class Workload:
    """What a torch path is about to run, as much as the rules need to know."""

    name: str  # "ppo_update", "rollout", "profile", "distill", "lora", ...
    params: int  # parameters of the model (one multiply-accumulate each per row)
    batch: int  # rows per call
    expected_calls: int = 0  # calls the run will make (0: unknown)
    training: bool = True  # forward + backward (about 3x a forward's work)

    @property
    def macs_per_call(self) -> int:
        return self.params * self.batch * (3 if self.training else 1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Choice(NamedTuple):
    value: Any
    reason: str


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    v = env.get(name, "").strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    return None


def decide_threads(hw: Hardware, env: Mapping[str, str], load1: float | None = None) -> tuple[Choice, Choice]:
    """Intra-op threads = physical cores capped by what the process may use, minus the cores other
    processes keep busy (``load1``: the 1-minute load average, this process included); inter-op = 1.

    The load term matters on a shared machine: torch's worker threads wait on each other at every
    op, so one that is descheduled stalls the rest (benchmarks/accel.py measured 2 threads 8x slower
    than 1 on a 2-core machine at load 7).
    """
    inter = Choice(1, "cadenza runs one op at a time (no inter-op parallelism to use)")
    for var in ("CADENZA_NUM_THREADS", "OMP_NUM_THREADS"):
        raw = env.get(var, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return Choice(int(raw), f"{var}={raw} set in the environment"), inter
    cores = max(1, min(hw.physical_cores, hw.usable_cpus))
    why = f"physical cores ({hw.physical_cores}) capped by the CPUs this process may use ({hw.usable_cpus})"
    if load1 is None:
        return Choice(cores, why), inter
    busy = max(0.0, load1 - 1.0)  # the load average counts this process too
    n = max(1, min(cores, int(cores - busy + 0.5)))
    if n < cores:
        return Choice(n, f"{why}, less {busy:.1f} kept busy by other processes (load average {load1:.1f}): "
                         "a descheduled worker thread stalls every op"), inter
    return Choice(n, f"{why}; load average {load1:.1f} leaves them free"), inter


def decide_matmul_precision(hw: Hardware) -> Choice:
    if hw.device == "cuda" and hw.tf32:
        return Choice("high", f"TF32 tensor cores (compute capability {_cap(hw)}): fp32 matmuls run as TF32")
    if hw.device == "cuda":
        return Choice("highest", f"no TF32 on this GPU (compute capability {_cap(hw)} < 8.0)")
    return Choice("highest", f"no TF32 on {hw.device}: matmuls stay full fp32")


def decide_bf16(hw: Hardware, workload: Workload | None, env: Mapping[str, str]) -> Choice:
    forced = _flag(env, "CADENZA_BF16")
    if forced is False:
        return Choice(False, "CADENZA_BF16=0 set in the environment")
    if hw.device == "mps":
        return Choice(False, "bf16 autocast is not used on MPS (not validated there)")
    if not hw.bf16:
        what = ("this GPU has no bf16 support" if hw.device == "cuda"
                else "this CPU has no native bf16 matmul (avx512_bf16 / AMX absent); autocast would only add casts")
        return Choice(False, what)
    if forced:
        return Choice(True, "CADENZA_BF16=1 set in the environment")
    if workload is None:
        return Choice(False, "no workload described: fp32")
    macs = workload.macs_per_call
    if macs < BF16_MIN_MACS:
        return Choice(False, f"model too small to gain: {macs:.3g} multiply-accumulates per call "
                             f"< {BF16_MIN_MACS:.3g} (dispatch bound)")
    return Choice(True,
                  f"{hw.device} has native bf16 and {workload.name} does {macs:.3g} multiply-accumulates per call")


def compile_blocker(hw: Hardware, workload: Workload, env: Mapping[str, str]) -> Choice | None:
    """A reason compile cannot or must not run here, or None when only the run length is left to judge."""
    forced = _flag(env, "CADENZA_COMPILE")
    if forced is False:
        return Choice(False, "CADENZA_COMPILE=0 set in the environment")
    if not hw.dynamo:
        return Choice(False, "torch.compile is not supported on this Python / platform")
    if hw.device == "mps":
        return Choice(False, "inductor on MPS is experimental")
    if hw.device == "cpu" and not hw.compiler:
        return Choice(False, "CPU without a C++ compiler (inductor generates C++)")
    if hw.device == "cuda" and not hw.triton:
        return Choice(False, "Triton is not installed (inductor's GPU code generator)")
    if forced:
        return Choice(True, "CADENZA_COMPILE=1 set in the environment")
    if workload.batch < COMPILE_MIN_BATCH:
        return Choice(False, f"small batches ({workload.batch} rows < {COMPILE_MIN_BATCH}): the time is Python "
                             "and dispatch overhead, which compile does not remove")
    return None


def decide_compile(hw: Hardware, workload: Workload, env: Mapping[str, str],
                   eager_call_s: float | None = None) -> Choice:
    """torch.compile only where it pays: supported hardware, large batches, a run long enough.

    ``eager_call_s`` is the measured time of one eager call of the workload (forward + backward when
    training); with it, compile is chosen when even its best gain over the run beats the first call.
    """
    blocked = compile_blocker(hw, workload, env)
    if blocked is not None:
        return blocked
    first = COMPILE_FIRST_CALL_S.get(hw.device, 60.0)
    if eager_call_s is None or workload.expected_calls <= 0:
        return Choice(False,
                      f"run length unknown: the first-call cost (~{first:.0f} s) might exceed what compile saves")
    gain = COMPILE_BEST_GAIN.get(hw.device, 0.30)
    saving = workload.expected_calls * eager_call_s * gain
    if saving < first:
        return Choice(False, f"first-call cost (~{first:.0f} s) above what the run can save ({saving:.1f} s at best: "
                             f"{workload.expected_calls} calls x {eager_call_s * 1e3:.2f} ms x {gain:.0%})")
    return Choice(True, f"the run can save up to {saving:.0f} s against a ~{first:.0f} s first call")


def _cap(hw: Hardware) -> str:
    return ".".join(map(str, hw.cuda_capability)) if hw.cuda_capability else "unknown"
