"""What the machine offers torch: cores, CPU features, GPU capability, a compiler for inductor.

Probing only reads; it never sets a torch knob (that is :func:`cadenza.accel.device.configure`'s job).
The result is a plain :class:`Hardware` record so the decision rules in
:mod:`cadenza.accel.decisions` can be tested with any hardware, including a GPU this machine lacks.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hardware:
    device: str  # cuda | mps | cpu
    device_name: str
    physical_cores: int
    usable_cpus: int  # CPUs this process may run on (affinity and cgroup quota)
    cpu_flags: tuple[str, ...] = ()  # the few flags the rules look at (avx2, avx512f, avx512_bf16, amx_bf16)
    cuda_capability: tuple[int, int] | None = None
    bf16: bool = False  # native bf16 matmuls on ``device``
    tf32: bool = False  # TF32 tensor cores on ``device``
    compiler: str | None = None  # C++ compiler inductor would use on CPU
    triton: bool = False  # inductor's GPU code generator
    dynamo: bool = True  # torch.compile is supported on this Python / platform
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpuinfo_cores(text: str) -> int:
    """Distinct (physical id, core id) pairs in a /proc/cpuinfo text; 0 when it names none."""
    pairs, phys = set(), "0"
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            pairs.add((phys, line.split(":", 1)[1].strip()))
    return len(pairs)


def cgroup_cpus(cpu_max: str) -> int | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2); None when unlimited."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, quota // period) if period > 0 else None


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def physical_cores() -> int:
    n = cpuinfo_cores(_read("/proc/cpuinfo"))
    return max(1, n or os.cpu_count() or 1)


def usable_cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpus(_read("/sys/fs/cgroup/cpu.max").strip())
    return max(1, min(n, quota) if quota else n)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere), for reports."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _cpu_name_and_flags() -> tuple[str, tuple[str, ...]]:
    text = _read("/proc/cpuinfo")
    name, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        if line.startswith("model name") and name in ("", platform.machine()):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not flags:  # not Linux: ask torch for the bf16-relevant features
        import torch

        probes = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported",
                  "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
        for flag, fn in probes.items():
            try:
                if getattr(torch.cpu, fn)():
                    flags.add(flag)
            except (AttributeError, RuntimeError):
                pass
    return name or "cpu", tuple(f for f in _FLAGS if f in flags)


def _dynamo_supported() -> bool:
    try:
        import torch._dynamo as dynamo

        return bool(dynamo.is_dynamo_supported())
    except Exception:
        return False


def probe_hardware(device: str) -> Hardware:
    """Read the facts the acceleration rules need for ``device`` (already picked)."""
    import torch

    cpu_name, flags = _cpu_name_and_flags()
    common = {"physical_cores": physical_cores(), "usable_cpus": usable_cpus(), "cpu_flags": flags,
              "dynamo": _dynamo_supported()}
    if device == "cuda":
        cap = torch.cuda.get_device_capability()
        try:
            import triton  # noqa: F401

            triton_ok = True
        except ImportError:
            triton_ok = False
        return Hardware(device="cuda", device_name=torch.cuda.get_device_name(), cuda_capability=cap,
                        bf16=bool(torch.cuda.is_bf16_supported()), tf32=cap >= (8, 0), triton=triton_ok, **common)
    if device == "mps":
        return Hardware(device="mps", device_name="Apple MPS", **common)
    compiler = shutil.which(os.environ.get("CXX", "")) if os.environ.get("CXX") else None
    compiler = compiler or next((p for c in ("g++", "c++", "clang++") if (p := shutil.which(c))), None)
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return Hardware(device="cpu", device_name=cpu_name, bf16=bf16, compiler=compiler, **common)
