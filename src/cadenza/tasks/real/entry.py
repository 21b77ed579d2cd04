"""Resolve ``package.module:attr`` entry points from a project (its root is importable meanwhile)."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class EntryPointError(Exception):
    """An entry point that cannot be imported; the message names it."""


def is_entry_point(spec: str) -> bool:
    """``my_robot:make_env`` is an entry point; ``Reacher-v5`` and ``my_pkg:MyEnv-v0`` are Gymnasium ids."""
    return ENTRY_POINT.fullmatch(spec) is not None


@contextmanager
def on_path(root: Path | None) -> Iterator[None]:
    """Put ``root`` first on ``sys.path`` for the duration (if it is not there already)."""
    added = root is not None and str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(root))


def resolve(spec: str, root: Path | None) -> Any:
    module_name, _, attr = spec.partition(":")
    with on_path(root):
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as e:
            raise EntryPointError(f"'{spec}': cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EntryPointError(f"'{spec}': {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
