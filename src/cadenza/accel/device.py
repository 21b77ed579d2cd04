"""Device pick and the process-wide torch knobs. No other module sets these knobs.

``configure(device, workload=...)`` picks the device, applies threads and matmul precision (once per
process; re-applied only when a choice changes), decides bf16 autocast for the workload and returns
an :class:`AccelSettings` that says what was applied and why. ``maybe_compile`` and ``autocast`` in
:mod:`cadenza.accel.wrap` act on that record and add their decisions to it, so a report that writes
``settings.as_dict()`` shows everything that was applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cadenza.accel.decisions import Workload, decide_bf16, decide_matmul_precision, decide_threads
from cadenza.accel.hardware import Hardware, physical_cores, probe_hardware

DEVICES = ("auto", "cuda", "mps", "cpu")

__all__ = ["DEVICES", "AccelSettings", "configure", "hardware", "physical_cores", "pick_device",
           "set_matmul_precision", "set_threads"]


@dataclass
class AccelSettings:
    device: str
    device_name: str = ""
    threads: int | None = None
    interop_threads: int | None = None
    matmul_precision: str | None = None
    bf16_autocast: bool = False
    compile: dict[str, dict[str, Any]] = field(default_factory=dict)  # module name -> applied, reason, ...
    reasons: dict[str, str] = field(default_factory=dict)  # knob -> why it has this value
    workload: dict[str, Any] | None = None
    torch_version: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a console: device, threads, precision, bf16, compile."""
        comp = ", ".join(f"{k} {'on' if v['applied'] else 'off'}" for k, v in self.compile.items()) or "not asked"
        return (f"{self.device} ({self.device_name}), {self.threads} threads, matmul {self.matmul_precision}, "
                f"bf16 autocast {'on' if self.bf16_autocast else 'off'}, compile: {comp}")


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


_HARDWARE: dict[str, Hardware] = {}


def hardware(device: str) -> Hardware:
    """The probed facts for ``device`` (probed once per process)."""
    if device not in _HARDWARE:
        _HARDWARE[device] = probe_hardware(device)
    return _HARDWARE[device]


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return None


def set_threads(intra: int, interop: int | None = None) -> tuple[int, int, str | None]:
    """Apply thread counts; returns what torch now uses and a note if inter-op could not change."""
    import torch

    if torch.get_num_threads() != intra:
        torch.set_num_threads(intra)
    note = None
    if interop is not None and torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:  # torch allows it once, before any inter-op work
            note = (f"inter-op threads stay {torch.get_num_interop_threads()}: torch had already started "
                    "its inter-op pool in this process")
    return torch.get_num_threads(), torch.get_num_interop_threads(), note


def set_matmul_precision(precision: str) -> str:
    import torch

    if torch.get_float32_matmul_precision() != precision:
        torch.set_float32_matmul_precision(precision)
    return torch.get_float32_matmul_precision()


def configure(requested: str = "auto", workload: Workload | None = None,
              env: Mapping[str, str] | None = None) -> AccelSettings:
    """Pick the device, apply threads and matmul precision, decide bf16 for ``workload``."""
    import torch

    device = pick_device(requested)
    hw = hardware(device)
    env = os.environ if env is None else env
    intra, inter = decide_threads(hw, env, _load1())
    mm = decide_matmul_precision(hw)
    threads, interop, note = set_threads(intra.value, inter.value)
    precision = set_matmul_precision(mm.value)
    bf16 = decide_bf16(hw, workload, env)
    s = AccelSettings(device=device, device_name=hw.device_name, threads=threads, interop_threads=interop,
                      matmul_precision=precision, bf16_autocast=bool(bf16.value),
                      reasons={"threads": intra.reason, "interop_threads": note or inter.reason,
                               "matmul_precision": mm.reason, "bf16_autocast": bf16.reason},
                      workload=workload.as_dict() if workload is not None else None,
                      torch_version=torch.__version__)
    return s
