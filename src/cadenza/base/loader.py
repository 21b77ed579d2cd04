"""Load a frozen base policy from ``builtin:<name>``, ``package.module:attr`` or ``path.onnx``.

A ``module:attr`` entry point may name a callable ``obs[N, d] -> a[N, k]`` directly or a factory
(class or zero-argument function) that returns one. Every base is wrapped in :class:`BasePolicy`,
which checks the shape and finiteness of what it returns and names the source in any error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class BasePolicyError(Exception):
    """A base policy that cannot be loaded or misbehaves; the message names its source."""


def _builtin(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name == "rescue-dog":
        from cadenza.base.rescue_dog import RescueDogBase

        return RescueDogBase()
    try:  # real-simulator bases register themselves in cadenza.base.builtin_real (sim extra)
        from cadenza.base import builtin_real
    except ImportError:
        builtin_real = None  # type: ignore[assignment]
    if builtin_real is not None and name in getattr(builtin_real, "BUILTINS", {}):
        return builtin_real.BUILTINS[name]()
    raise BasePolicyError(f"unknown built-in base 'builtin:{name}'")


def _entry_point(spec: str, search_dir: Path | None) -> Callable[[np.ndarray], np.ndarray]:
    module_name, _, attr = spec.partition(":")
    added = False
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
        added = True
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise BasePolicyError(f"base entry point '{spec}': cannot import {module_name!r}: {e}") from None
    finally:
        if added:
            sys.path.remove(str(search_dir))
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BasePolicyError(f"base entry point '{spec}': {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and getattr(obj, "__cadenza_factory__", False)):
        try:
            obj = obj()
        except Exception as e:
            raise BasePolicyError(f"base entry point '{spec}': constructing it raised "
                                  f"{type(e).__name__}: {e}") from None
    if not callable(obj):
        raise BasePolicyError(f"base entry point '{spec}': expected a callable obs -> action, got {type(obj).__name__}")
    return obj


class _OnnxBase:
    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BasePolicyError(f"base {path}: ONNX bases need the export extra: "
                                  "pip install -e '.[export]'") from None
        if not path.is_file():
            raise BasePolicyError(f"base {path}: no such ONNX file")
        try:
            self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BasePolicyError(f"base {path}: not a loadable ONNX model: {e}") from None
        self.input = self.sess.get_inputs()[0].name

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input: obs.astype(np.float32)})[0]


class BasePolicy:
    """A frozen base with its source name; calls are shape- and finiteness-checked."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], source: str, act_dim: int | None = None) -> None:
        self.fn = fn
        self.source = source
        self.act_dim = act_dim

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        try:
            out = self.fn(obs)
        except Exception as e:
            raise BasePolicyError(f"base '{self.source}' raised {type(e).__name__}: {e}") from e
        a = np.asarray(out, dtype=np.float64)
        n = obs.shape[0]
        if a.ndim != 2 or a.shape[0] != n or (self.act_dim is not None and a.shape[1] != self.act_dim):
            want = f"({n}, {self.act_dim if self.act_dim is not None else 'k'})"
            raise BasePolicyError(f"base '{self.source}' returned shape {a.shape}, expected {want}")
        if not np.all(np.isfinite(a)):
            raise BasePolicyError(f"base '{self.source}' returned non-finite actions")
        return a


def load_base(source: str, project_root: Path | None = None, act_dim: int | None = None) -> BasePolicy:
    """Resolve a base source string into a checked :class:`BasePolicy`."""
    if source.startswith("builtin:"):
        fn = _builtin(source.removeprefix("builtin:"))
    elif source.endswith(".onnx"):
        path = Path(source)
        if not path.is_absolute() and project_root is not None:
            path = project_root / path
        fn = _OnnxBase(path)
    else:
        fn = _entry_point(source, project_root)
    return BasePolicy(fn, source, act_dim)
