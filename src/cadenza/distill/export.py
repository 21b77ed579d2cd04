"""Export a trained student: ONNX fp32, int8 ONNX (ONNX Runtime dynamic quantization), safetensors, parity.

* ``export_onnx``: ``torch.onnx.export`` (the torch.export-based exporter, opset 18, dynamic batch),
  then :func:`compact` strips what the exporter adds for debugging (per-node stack traces, value
  info, long intermediate names) so the file holds the graph and the weights only.
* ``quantize_int8``: ``onnxruntime.quantization.quantize_dynamic`` with int8 weights: each
  ``MatMul`` becomes ``DynamicQuantizeLinear`` + ``MatMulInteger`` (activations quantised per call),
  the normaliser, biases and bounds stay fp32. (``torch.ao.quantization`` is deprecated.)
* ``save_weights``: the fp32 tensors in safetensors, the architecture in its metadata.
* ``parity``: the largest absolute action difference between the torch student and each export, on
  the same observations.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

from cadenza.distill.quant_aware import per_channel_layer
from cadenza.distill.runtime import PER_OBSERVATION_KEY, NumpyStudent, OnnxStudent, read_safetensors
from cadenza.distill.student import FORMAT, Student, StudentArch
from cadenza.errors import ArtefactError
from cadenza.utils.io import atomic_write_bytes

OPSET = 18
FP32_PARITY_TOL = 1e-5


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter / quantizer chatter (warnings and log lines that are not errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _short_initializer_name(name: str) -> str:
    for long, short in (("_quantized", "q"), ("_scale", "s"), ("_zero_point", "z")):
        if name.endswith(long):
            return name[: -len(long)] + short
    return "c" + name[4:] if name.startswith("val_") else name


def compact(model: onnx.ModelProto, *, keep_node_names: bool = False) -> onnx.ModelProto:
    """Drop debugging payload and shorten names; the computation is unchanged.

    Removes doc strings, per-node metadata (the exporter's stack traces) and value info, renames
    intermediate tensors ``t0, t1, ...`` and the quantizer's initializers (``w0_quantized`` -> ``w0q``,
    ``w0_scale`` -> ``w0s``, ``w0_zero_point`` -> ``w0z``). Node names are kept as ``n0, n1, ...``
    with ``keep_node_names`` (the quantizer addresses nodes by name) and dropped otherwise.
    """
    g = model.graph
    del model.metadata_props[:]
    for proto in (model, g):
        proto.ClearField("doc_string")
    g.name = "student"
    del g.value_info[:]
    rename = {t.name: _short_initializer_name(t.name) for t in g.initializer}
    for t in g.initializer:
        t.name = rename[t.name]
    keep = {v.name for v in g.input} | {v.name for v in g.output} | set(rename.values())
    for i, node in enumerate(g.node):
        if keep_node_names:
            node.name = f"n{i}"
        else:
            node.ClearField("name")
        node.ClearField("doc_string")
        del node.metadata_props[:]
        for j, name in enumerate(node.input):
            if name in rename:
                node.input[j] = rename[name]
        for j, name in enumerate(node.output):
            if name and name not in keep:
                rename[name] = f"t{sum(1 for v in rename.values() if v.startswith('t'))}"
                node.output[j] = rename[name]
    model.producer_name = "cadenza"
    model.ClearField("producer_version")
    return model


def _save_model(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())


def export_onnx(student: Student, path: str | Path) -> None:
    """The student (normaliser and bounds included) as one self-contained fp32 ONNX file."""
    _save_model(compact(_export(student)), Path(path))


def _export(student: Student) -> onnx.ModelProto:
    student = student.cpu().eval()
    example = torch.zeros(2, student.arch.obs_dim)
    with _quiet():
        program = torch.onnx.export(
            student, (example,), dynamo=True, input_names=["obs"], output_names=["action"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET, external_data=False,
            verbose=False, optimize=True,
        )
    return program.model_proto


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> None:
    """8-bit dynamic quantization of the fp32 export (weights 8-bit, activations quantised per call).

    Weights are unsigned 8-bit. The first and the last layer get one scale per output channel, the
    hidden-to-hidden layer one scale for the whole matrix (``quant_aware.per_channel_layer``): on the
    rescue-dog student the first layer's per-tensor scale was the largest source of action error, and
    per-channel scales on the 64 x 64 layer cost as many bytes for less gain (docs/distill.md has the
    measurements). ``cadenza.distill.quant_aware`` mirrors this scheme in torch for fine-tuning.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = compact(onnx.load(str(fp32_path)), keep_node_names=True)
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    per_channel = [n for i, n in enumerate(matmuls) if per_channel_layer(i, len(matmuls))]
    per_tensor = [n for n in matmuls if n not in per_channel]
    with tempfile.TemporaryDirectory(prefix="cadenza-q-") as tmp:
        named, mid, out = (Path(tmp) / n for n in ("named.onnx", "mid.onnx", "out.onnx"))
        onnx.save(model, str(named))
        with _quiet():
            src = named
            if per_tensor:
                quantize_dynamic(str(src), str(mid), weight_type=QuantType.QUInt8, per_channel=False,
                                 nodes_to_quantize=per_tensor)
                src = mid
            quantize_dynamic(str(src), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                             nodes_to_quantize=per_channel)
        model = compact(onnx.load(str(out)))
    # activations are quantised with a scale computed over the whole input tensor: a batch would share
    # one scale across observations, so the runtime feeds this model one observation at a time
    onnx.helper.set_model_props(model, {PER_OBSERVATION_KEY: "1"})
    _save_model(model, Path(int8_path))


def save_weights(student: Student, path: str | Path) -> None:
    """fp32 tensors (normaliser included) in safetensors; the architecture goes in the metadata."""
    from safetensors.numpy import save

    meta = {"format": FORMAT, "arch": json.dumps(student.arch.as_dict())}
    atomic_write_bytes(path, save(student.numpy_weights(), metadata=meta))


def load_weights(path: str | Path) -> Student:
    """A torch student from a safetensors file written by :func:`save_weights` (ArtefactError if not)."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a cadenza student (expected format {FORMAT})")
    try:
        return Student.from_numpy(StudentArch(**json.loads(meta["arch"])), tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtefactError(f"{path}: student weights do not match their architecture ({e})") from None


@torch.no_grad()
def parity(student: Student, obs: np.ndarray, files: dict[str, Path], single: int = 64) -> dict[str, float]:
    """Largest |action difference| between the torch student and each file, on ``obs`` (batched) and on
    the first ``single`` observations one at a time (the runtime's fast path)."""
    ref = student.cpu().eval()(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    out: dict[str, float] = {}
    for label, path in files.items():
        rt = NumpyStudent(path) if Path(path).suffix == ".safetensors" else OnnxStudent(path)
        batch = np.abs(rt.act(obs) - ref).max()
        one = max((float(np.abs(rt.act(obs[i]) - ref[i]).max()) for i in range(min(single, len(obs)))), default=0.0)
        out[label] = float(max(batch, one))
    return out
