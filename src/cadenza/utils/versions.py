"""Library versions recorded in every report."""

from __future__ import annotations

import platform
from importlib import metadata


def library_versions(*names: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for n in ("cadenza", "numpy", "gymnasium", *names):
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out
