"""The acceleration layer: the one place that picks the device and sets torch's knobs."""

from cadenza.accel.decisions import Workload
from cadenza.accel.device import AccelSettings, configure, pick_device
from cadenza.accel.wrap import autocast, maybe_compile

__all__ = ["AccelSettings", "Workload", "autocast", "configure", "maybe_compile", "pick_device"]
