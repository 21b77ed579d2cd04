"""The onboard runtime: load an exported student and act on observations. numpy + onnxruntime only.

This module never imports torch (a test checks ``sys.modules`` in a fresh interpreter), so it runs on
a robot computer that has neither the base policy nor a deep-learning framework.

* :class:`OnnxStudent` runs ``student.onnx`` (fp32) or ``student.int8.onnx`` with ONNX Runtime on one
  thread. A single observation goes through pre-bound input and output buffers (I/O binding), which
  avoids most of the per-call overhead of ``InferenceSession.run``; batches go through ``run``,
  except for the int8 export, whose activation scale is computed per call: it is fed one observation
  at a time, so a batch gets exactly the actions the robot would get. The fp32 export is the shipped
  runtime (see ``docs/distill.md`` and ``benchmarks/student_latency.py`` for why).
* :class:`NumpyStudent` is the same network as plain numpy matrix products over the fp32 weights in
  ``student.safetensors`` (read here with a few lines of numpy; no safetensors package needed): a
  fallback for machines without onnxruntime, and the "plain numpy" row of the latency benchmark.

Every load failure is an :class:`~cadenza.errors.ArtefactError` with one line naming the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cadenza.errors import ArtefactError, CadenzaError

FP32_NAME, INT8_NAME = "student.onnx", "student.int8.onnx"
WEIGHTS_NAME, META_NAME = "student.safetensors", "student.json"
PRECISION_FILES = {"fp32": FP32_NAME, "int8": INT8_NAME}
PER_OBSERVATION_KEY = "cadenza.per_observation"  # model metadata: run one observation per call (int8)
SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


# ---------------------------------------------------------------------------------------------- files
def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file with numpy alone: (tensors, ``__metadata__``). Raises ArtefactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path}: no such student weights file")
    data = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        if n > len(data) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(data[8:8 + n])
        meta = header.pop("__metadata__", {}) or {}
        body = memoryview(data)[8 + n:]
        tensors = {}
        for name, spec in header.items():
            dtype = np.dtype(SAFETENSORS_DTYPES[spec["dtype"]])
            begin, end = spec["data_offsets"]
            shape = tuple(spec["shape"])
            if end > len(body) or end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise ValueError(f"tensor {name!r}: data offsets do not match its shape")
            tensors[name] = np.frombuffer(body[begin:end], dtype=dtype.newbyteorder("<")).reshape(shape).copy()
    except (ValueError, KeyError, TypeError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtefactError(f"{path}: not a readable safetensors file ({type(e).__name__}: {str(e)[:120]})") from None
    return tensors, dict(meta)


def _check_obs(x: np.ndarray, obs_dim: int) -> None:
    if x.ndim not in (1, 2) or x.shape[-1] != obs_dim:
        raise ValueError(f"student expects observations of shape ({obs_dim},) or (N, {obs_dim}), got {x.shape}")


# ---------------------------------------------------------------------------------------------- onnx
class OnnxStudent:
    """An exported student run by ONNX Runtime (CPU, ``threads`` intra-op threads, sequential)."""

    def __init__(self, path: str | Path, *, threads: int = 1, version: str | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise ArtefactError(f"{path}: no such student file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise CadenzaError("the student runtime needs onnxruntime: pip install -e '.[export]'") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.sess = ort.InferenceSession(path.read_bytes(), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ArtefactError(f"{path}: not a loadable ONNX student ({type(e).__name__}: {str(e)[:120]})") from None
        ins, outs = self.sess.get_inputs(), self.sess.get_outputs()
        if len(ins) != 1 or len(outs) != 1 or len(ins[0].shape) != 2 or not isinstance(ins[0].shape[1], int) \
                or len(outs[0].shape) != 2 or not isinstance(outs[0].shape[1], int):
            raise ArtefactError(f"{path}: not a cadenza student (expected one input [N, obs_dim] and one output "
                                "[N, act_dim])")
        self.path, self.version = path, version
        self.input_name, self.output_name = ins[0].name, outs[0].name
        self.obs_dim, self.act_dim = int(ins[0].shape[1]), int(outs[0].shape[1])
        # dynamically quantised models share one activation scale across a batch; such a model is fed one
        # observation per call, so a batch gives exactly what the robot gets observation by observation
        self.per_observation = self.sess.get_modelmeta().custom_metadata_map.get(PER_OBSERVATION_KEY) == "1"
        # single-observation fast path: ONNX Runtime reads and writes these numpy buffers in place
        self._in = np.zeros((1, self.obs_dim), dtype=np.float32)
        self._out = np.zeros((1, self.act_dim), dtype=np.float32)
        self._io = self.sess.io_binding()
        self._in_value = ort.OrtValue.ortvalue_from_numpy(self._in)
        self._out_value = ort.OrtValue.ortvalue_from_numpy(self._out)
        self._io.bind_ortvalue_input(self.input_name, self._in_value)
        self._io.bind_ortvalue_output(self.output_name, self._out_value)
        self._run = self.sess.run_with_iobinding
        self._one, self._row = (self.obs_dim,), (1, self.obs_dim)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``obs[obs_dim]`` -> ``action[act_dim]``, or ``obs[N, obs_dim]`` -> ``action[N, act_dim]`` (float32)."""
        x = obs if isinstance(obs, np.ndarray) else np.asarray(obs)
        shape = x.shape
        if shape == self._one:  # the per-step path: as few Python operations as possible
            self._in[0] = x
            self._run(self._io)
            return self._out[0].copy()
        if shape == self._row:
            self._in[0] = x[0]
            self._run(self._io)
            return self._out.copy()
        _check_obs(x, self.obs_dim)
        if self.per_observation:
            return np.stack([self.act(row) for row in x])
        return self.sess.run(None, {self.input_name: x.astype(np.float32, copy=False)})[0]

    __call__ = act


# ---------------------------------------------------------------------------------------------- numpy
class NumpyStudent:
    """The student as numpy matrix products over the fp32 weights of ``student.safetensors``."""

    def __init__(self, path: str | Path, *, version: str | None = None) -> None:
        path = Path(path)
        tensors, meta = read_safetensors(path)
        try:
            arch = json.loads(meta["arch"])
            self.obs_dim, self.act_dim = int(arch["obs_dim"]), int(arch["act_dim"])
            self.low, self.high, self.clip = float(arch["low"]), float(arch["high"]), float(arch["obs_clip"])
            self.activation = arch["activation"]
            n = int(arch["layers"]) + 1
            self.mean = tensors["obs_mean"].astype(np.float32)
            self.inv_std = tensors["obs_inv_std"].astype(np.float32)
            self.w = [tensors[f"w{i}"].astype(np.float32) for i in range(n)]
            self.b = [tensors[f"b{i}"].astype(np.float32) for i in range(n)]
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
            raise ArtefactError(f"{path}: not a cadenza student weights file ({type(e).__name__}: {e})") from None
        widths = [self.obs_dim] + [w.shape[1] for w in self.w]
        if self.activation not in ("tanh", "relu") or widths[-1] != self.act_dim or any(
                w.shape != (a, b) or bb.shape != (b,)
                for w, bb, a, b in zip(self.w, self.b, widths[:-1], widths[1:], strict=True)):
            raise ArtefactError(f"{path}: student weights do not match their architecture")
        self.path, self.version = path, version
        # single-observation fast path: transposed (output-major) weights and preallocated buffers
        self._one = (self.obs_dim,)
        self._bufs = [np.zeros(self.obs_dim, np.float32)] + [np.zeros(w.shape[1], np.float32) for w in self.w]
        self._layers = [(np.ascontiguousarray(w.T), b, out, self.activation if i < n - 1 else None)
                        for i, (w, b, out) in enumerate(zip(self.w, self.b, self._bufs[1:], strict=True))]

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = obs if isinstance(obs, np.ndarray) else np.asarray(obs)
        if x.shape == self._one:
            return self._act_one(x)
        _check_obs(x, self.obs_dim)
        if x.shape[0] == 1:
            return self._act_one(x[0])[None, :]
        h = np.clip((x.astype(np.float32) - self.mean) * self.inv_std, -self.clip, self.clip)
        last = len(self.w) - 1
        for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            h = h @ w + b
            if i < last:
                h = np.tanh(h) if self.activation == "tanh" else np.maximum(h, 0.0)
        return np.clip(h, self.low, self.high)

    def _act_one(self, x: np.ndarray) -> np.ndarray:
        # ufuncs with preallocated outputs; np.maximum / np.minimum instead of np.clip (less overhead per call)
        z = self._bufs[0]
        z[:] = x  # one cast to float32 first: mixed-precision ufuncs with out= are several times slower
        np.subtract(z, self.mean, out=z)
        np.multiply(z, self.inv_std, out=z)
        np.maximum(z, -self.clip, out=z)
        np.minimum(z, self.clip, out=z)
        h = z
        for wt, b, out, act in self._layers:
            np.dot(wt, h, out=out)
            np.add(out, b, out=out)
            if act == "tanh":
                np.tanh(out, out=out)
            elif act == "relu":
                np.maximum(out, 0.0, out=out)
            h = out
        np.maximum(h, self.low, out=h)
        np.minimum(h, self.high, out=h)
        return h.copy()

    __call__ = act


# ---------------------------------------------------------------------------------------------- loading
def load_student(path: str | Path, *, version: str | None = None, threads: int = 1) -> OnnxStudent | NumpyStudent:
    """A student from one file: ``.onnx`` (ONNX Runtime) or ``.safetensors`` (numpy)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return NumpyStudent(path, version=version)
    if path.suffix == ".onnx":
        return OnnxStudent(path, threads=threads, version=version)
    raise ArtefactError(f"{path}: a student file ends in .onnx or .safetensors")


def student_file(manifest_files: dict[str, Any], precision: str) -> str:
    """The registry file name that holds the student in ``precision`` (fp32 | int8 | numpy)."""
    name = WEIGHTS_NAME if precision == "numpy" else PRECISION_FILES.get(precision)
    if name is None:
        raise CadenzaError(f"unknown student precision {precision!r}; expected fp32, int8 or numpy")
    if name not in manifest_files:
        hint = " (distill with --quantize to export one)" if precision == "int8" else ""
        raise ArtefactError(f"this student version has no {precision} export{hint}")
    return name


def load_registered_student(project_root: str | Path, version: str, precision: str = "fp32"
                            ) -> OnnxStudent | NumpyStudent:
    """A registered student version (hash-verified by the registry) in the given precision."""
    from cadenza.governance.registry import open_registry

    reg = open_registry(project_root)
    man = reg.verify("student", version)
    return load_student(reg.path("student", version, student_file(man["files"], precision)), version=version)


def load_promoted_student(project: Any, precision: str | None = None) -> OnnxStudent | NumpyStudent | None:
    """The project's promoted student, or None when there is none.

    ``precision`` defaults to the one the student was promoted to run in (``runtime`` in its
    metadata: ``fp32`` unless said otherwise).
    """
    from cadenza.governance.registry import open_registry

    root = project.root if hasattr(project, "root") else Path(project)
    reg = open_registry(project)
    version = reg.baseline("student")
    if version is None:
        return None
    man = reg.verify("student", version)
    precision = precision or str(man.get("metadata", {}).get("runtime", "fp32"))
    return load_registered_student(root, version, precision)


# The latency harness lives in cadenza.distill.latency; these names stay importable from here for
# the callers that still import them from the runtime (distill/scoring.py).
from cadenza.distill.latency import latency_in_fresh_process, measure_latency  # noqa: E402

__all__ = ["latency_in_fresh_process", "measure_latency"]
