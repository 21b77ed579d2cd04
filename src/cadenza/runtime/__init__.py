"""The safe runtime a user embeds in a control loop: base always, correction under a deadline."""

from cadenza.runtime.health import FALLBACK_CAUSES, HealthReport
from cadenza.runtime.numpy_actor import NumpyResidual, TorchResidual
from cadenza.runtime.project import from_project
from cadenza.runtime.safe import DEFAULT_BUDGET_US, BaseFault, SafeRuntime

__all__ = ["DEFAULT_BUDGET_US", "FALLBACK_CAUSES", "BaseFault", "HealthReport", "NumpyResidual", "SafeRuntime",
           "TorchResidual", "from_project"]
