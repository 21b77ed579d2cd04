"""Device pick and per-hardware torch settings. No other module sets these knobs."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

DEVICES = ("auto", "cuda", "mps", "cpu")


@dataclass
class AccelSettings:
    device: str
    threads: int | None = None
    interop_threads: int | None = None
    matmul_precision: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(requested: str = "auto") -> str:
    """``auto`` = cuda -> mps -> cpu; an explicit device that is not there is a clear error."""
    import torch

    from cadenza.errors import CadenzaError

    if requested not in DEVICES:
        raise CadenzaError(f"--device: expected one of {', '.join(DEVICES)}, got {requested!r}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise CadenzaError("--device cuda: no CUDA device is visible to torch on this machine")
    if requested == "mps" and not mps:
        raise CadenzaError("--device mps: Apple MPS is not available on this machine")
    return requested


def physical_cores() -> int:
    n = os.cpu_count() or 1
    try:
        with open("/proc/cpuinfo") as f:
            pairs = {(ln_phys, ln_core) for ln_phys, ln_core in _cpuinfo_pairs(f.read())}
        if pairs:
            n = len(pairs)
    except OSError:
        pass
    return max(1, n)


def _cpuinfo_pairs(text: str) -> list[tuple[str, str]]:
    out, phys = [], "0"
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":")[1].strip()
        elif line.startswith("core id"):
            out.append((phys, line.split(":")[1].strip()))
    return out


_CONFIGURED: AccelSettings | None = None


def configure(requested: str = "auto") -> AccelSettings:
    """Pick the device and apply thread / precision settings once per process."""
    global _CONFIGURED
    import torch

    device = pick_device(requested)
    if _CONFIGURED is not None and _CONFIGURED.device == device:
        return _CONFIGURED
    s = AccelSettings(device=device)
    if device == "cpu":
        cores = min(physical_cores(), os.cpu_count() or 1)
        torch.set_num_threads(cores)
        s.threads = cores
        try:
            torch.set_num_interop_threads(1)
            s.interop_threads = 1
        except RuntimeError:  # already set once in this process
            s.interop_threads = torch.get_num_interop_threads()
    elif device == "cuda":
        torch.set_float32_matmul_precision("high")
        s.matmul_precision = "high"
    _CONFIGURED = s
    return s
