"""The LoRA action head: the frozen encoder with its LoRA matrices, the plan decoder, and abstention.

Saved as two files (registered together, kind ``lora``):

* ``adapter.safetensors``: the LoRA matrices (``lora.<module>``), the decoder (``decoder.<name>``)
  and the embeddings of the training goal texts (``ood.train_vectors``) that abstention compares with;
* ``adapter.json``: the step codec (vocabulary slots), the encoder's identity (name, size, weight
  hash, LoRA targets), the rank, the abstention threshold and the training record.

Nothing is unpickled: tensors come from safetensors, the rest is JSON. At load the encoder must be
the one the adapter was trained on (same name, size and weight hash), every tensor must be present
with its shape, and nothing extra may be there; otherwise one line says what differs. A loaded head
is for inference: its LoRA matrices are merged into the encoder's weights (:func:`merge_lora`).

**Abstention.** A goal's *similarity* is the largest cosine between its embedding and the training
goal texts' embeddings (both through the adapted encoder). Below the calibrated threshold the head
abstains: no plan, and in a mission a logged safe stop (:class:`cadenza.mission.objectives.PlannerStop`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cadenza.errors import ArtefactError
from cadenza.lora.decoder import DecoderConfig, PlanDecoder, state_dict_named
from cadenza.lora.encoder import encoder_id
from cadenza.lora.features import StepCodec, observation_features, safe_step
from cadenza.mission.actions import ActionStep

ADAPTER_FILE = "adapter.safetensors"
META_FILE = "adapter.json"
FORMAT = "cadenza-lora-head/1"


def apply_lora(encoder: Any, rank: int, alpha: float | None = None) -> None:
    """Inject LoRA matrices (peft) into ``encoder.lora_targets``; only they require gradients."""
    if rank <= 0:
        return
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else 2 * rank),
                     target_modules=list(encoder.lora_targets), lora_dropout=0.0, bias="none")
    inject_adapter_in_model(cfg, encoder)
    for name, p in encoder.named_parameters():
        p.requires_grad_("lora_" in name)


def merge_lora(encoder: Any) -> int:
    """Fold the LoRA matrices into the frozen weights (``W + scale * B @ A``, peft's ``merge``) for
    inference: the same outputs up to float rounding, without the extra matmuls. Returns the layers merged."""
    from peft.tuners.lora import LoraLayer

    n = 0
    for m in encoder.modules():
        if isinstance(m, LoraLayer) and not m.merged:
            m.merge(safe_merge=True)
            n += 1
    return n


def lora_tensors(encoder: Any) -> dict[str, torch.Tensor]:
    return {f"lora.{n}": p.detach().contiguous() for n, p in encoder.named_parameters() if "lora_" in n}


@dataclass
class Decoded:
    goal: str
    steps: list[ActionStep]
    probs: list[float]
    similarity: float
    threshold: float
    nearest: str
    abstained: bool

    @property
    def confidence(self) -> float:
        """Geometric mean of the chosen actions' probabilities (0 when abstaining)."""
        if not self.probs or self.abstained:
            return 0.0
        return float(torch.tensor(self.probs).log().mean().exp())

    def text(self) -> str:
        return ", ".join(s.text() for s in self.steps)


@dataclass
class ActionHead:
    encoder: Any
    decoder: PlanDecoder
    codec: StepCodec
    rank: int
    train_texts: list[str]
    train_vectors: torch.Tensor  # (n, dim), unit vectors
    threshold: float
    max_len: int
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Sentence vectors (no gradient), cached per text."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            self.encoder.eval()
            with torch.no_grad():
                vecs = self.encoder(todo)
            for t, v in zip(todo, vecs, strict=True):
                self._cache[t] = v
        return torch.stack([self._cache[t] for t in texts])

    def clear_cache(self) -> None:
        self._cache.clear()

    def similarity(self, vec: torch.Tensor) -> tuple[float, str]:
        sims = self.train_vectors @ vec
        i = int(torch.argmax(sims))
        return float(sims[i]), self.train_texts[i]

    def decode(self, goal: str, observation: dict[str, Any] | None = None, prev: ActionStep | None = None,
               max_len: int | None = None) -> Decoded:
        from cadenza.lora.augment import normalise

        text = normalise(goal)
        vec = self.embed([text])
        sim, nearest = self.similarity(vec[0])
        if sim < self.threshold:
            return Decoded(goal, [], [], sim, self.threshold, nearest, True)
        obs = torch.tensor([observation_features(observation)], dtype=vec.dtype)
        prv = torch.tensor([self.codec.encode(prev)], dtype=vec.dtype)
        self.decoder.eval()
        steps, probs = self.decoder.decode(vec, obs, prv, min(max_len or self.max_len, self.max_len),
                                           safe=(lambda s: safe_step(s, observation)) if observation else None)
        return Decoded(goal, steps, probs, sim, self.threshold, nearest, False)

    # ------------------------------------------------------------------ files
    def tensors_decoder(self) -> dict[str, torch.Tensor]:
        """The decoder and the training vectors only (the frozen-encoder baseline's file)."""
        out = dict(state_dict_named(self.decoder))
        out["ood.train_vectors"] = self.train_vectors.detach().contiguous()
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        out = lora_tensors(self.encoder)
        out.update(state_dict_named(self.decoder))
        out["ood.train_vectors"] = self.train_vectors.detach().contiguous()
        return out

    def metadata(self) -> dict[str, Any]:
        return {"format": FORMAT, "codec": self.codec.as_dict(), "encoder": encoder_id(self.encoder),
                "rank": self.rank, "decoder": self.decoder.cfg.as_dict(), "train_texts": self.train_texts,
                "threshold": self.threshold, "max_len": self.max_len, **self.meta}

    def save(self, directory: Path) -> dict[str, Path]:
        """Write ``adapter.safetensors`` and ``adapter.json`` into ``directory`` (atomically each)."""
        from safetensors.torch import save_file

        from cadenza.utils.io import atomic_write_json, atomic_write_with

        directory.mkdir(parents=True, exist_ok=True)
        tensors = self.tensors()
        atomic_write_with(directory / ADAPTER_FILE, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(directory / META_FILE, self.metadata())
        return {ADAPTER_FILE: directory / ADAPTER_FILE, META_FILE: directory / META_FILE}


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtefactError(f"{path}: not a readable adapter description ({type(e).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a cadenza LoRA head (format {FORMAT} expected)")
    return meta


def load_baseline(path: Path, meta_path: Path, encoder: Any) -> ActionHead:
    """The frozen-encoder baseline of a version (its stage-1 decoder on ``encoder`` without LoRA); it
    never abstains."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(meta_path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtefactError(f"{path}: not a readable safetensors file ({e})") from None
    codec = StepCodec.from_dict(meta["codec"])
    decoder = PlanDecoder(DecoderConfig(**meta["decoder"]), codec)
    try:
        decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
    except RuntimeError as e:
        raise ArtefactError(f"{path}: the baseline decoder does not match its description ({str(e)[:120]})") from None
    decoder.eval()
    return ActionHead(encoder, decoder, codec, 0, list(meta["train_texts"]), tensors["ood.train_vectors"], -1.0,
                      int(meta["max_len"]), {})


def load_head(adapter: Path, meta_path: Path, encoder: Any) -> ActionHead:
    """Build the head from its two files on ``encoder`` (a fresh, frozen encoder without LoRA)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(meta_path)
    want, have = meta["encoder"], encoder_id(encoder)
    for key in ("name", "dim", "weights_sha256"):
        if want.get(key) != have.get(key):
            raise ArtefactError(f"{meta_path}: the adapter was trained on encoder {key} {want.get(key)!r}, this "
                                f"project's encoder has {have.get(key)!r}; fine-tune again")
    try:
        tensors = load_file(str(adapter))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtefactError(f"{adapter}: not a readable safetensors file ({e})") from None
    codec = StepCodec.from_dict(meta["codec"])
    rank = int(meta["rank"])
    apply_lora(encoder, rank)
    decoder = PlanDecoder(DecoderConfig(**meta["decoder"]), codec)
    expected = {**{f"lora.{n}": p for n, p in encoder.named_parameters() if "lora_" in n},
                **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    missing = sorted(set(expected) - set(tensors) - {"ood.train_vectors"})
    extra = sorted(set(tensors) - set(expected) - {"ood.train_vectors"})
    if missing or extra or "ood.train_vectors" not in tensors:
        what = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                else "missing ood.train_vectors")
        raise ArtefactError(f"{adapter}: tensors do not match the adapter description ({what}); refusing to load it")
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise ArtefactError(f"{adapter}: tensor {name} has shape {tuple(tensors[name].shape)}, expected "
                                f"{tuple(ref.shape)}; refusing to load it")
    with torch.no_grad():
        params = dict(encoder.named_parameters())
        for name in expected:
            if name.startswith("lora."):
                params[name[5:]].copy_(tensors[name])
    decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
    vectors = tensors["ood.train_vectors"]
    texts = list(meta["train_texts"])
    if tuple(vectors.shape) != (len(texts), encoder.dim):
        raise ArtefactError(f"{adapter}: ood.train_vectors has shape {tuple(vectors.shape)}, expected "
                            f"({len(texts)}, {encoder.dim})")
    for p in encoder.parameters():
        p.requires_grad_(False)
    merge_lora(encoder)
    encoder.eval()
    if hasattr(encoder, "use_onnx_runtime"):  # MiniLM: inference through ONNX Runtime (same vectors, faster)
        encoder.use_onnx_runtime()
    decoder.eval()
    extra_meta = {k: v for k, v in meta.items() if k not in ("format", "codec", "encoder", "rank", "decoder",
                                                            "train_texts", "threshold", "max_len")}
    return ActionHead(encoder, decoder, codec, rank, texts, vectors, float(meta["threshold"]), int(meta["max_len"]),
                      extra_meta)
