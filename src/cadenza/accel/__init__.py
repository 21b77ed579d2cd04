"""The acceleration layer: the one place that picks the device and sets torch's knobs."""

from cadenza.accel.device import AccelSettings, configure, pick_device

__all__ = ["AccelSettings", "configure", "pick_device"]
