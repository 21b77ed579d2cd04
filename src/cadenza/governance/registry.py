"""The artefact registry of a project: immutable versions, an append-only ledger, baseline pointers.

Layout under ``<project>/.cadenza/registry/``::

    <kind>/v0001/<files...>   immutable; manifest.json holds each file's sha256 and the metadata
    ledger.jsonl              one JSON object per event: register, verdict, promote, rollback
    pointers.json             {kind: {"baseline": "v0002", "previous": ["v0001"]}}

Kinds: ``residual``, ``student``, ``lora``, ``prompt``. A promoted version is also *published*: its
files are copied (atomically) to the well-known paths users load (e.g. ``residual/residual_policy.pt``).
A version whose files do not match its manifest is refused, never loaded.

:func:`open_registry` is how commands get a project's registry: this local one by default, or, with
``[registry] backend = "mlflow"``, :class:`cadenza.governance.registry_mlflow.MlflowRegistry`, the same
interface on an MLflow model registry that a team shares (this folder layout is then its local cache).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cadenza.errors import ArtefactError, CadenzaError
from cadenza.utils.io import (
    JsonlError,
    atomic_write_bytes,
    atomic_write_json,
    jsonl_records,
    new_temp_dir,
    sha256_file,
)

KINDS = ("residual", "student", "lora", "prompt")

# Where a promoted version's files are published, relative to the project root.
PUBLISH: dict[str, dict[str, str]] = {
    "residual": {"policy.pt": "residual/residual_policy.pt"},
    "student": {"student.onnx": "student/student.onnx", "student.int8.onnx": "student/student.int8.onnx",
                "student.safetensors": "student/student.safetensors", "student.json": "student/student.json"},
    "lora": {},
    "prompt": {"SYSTEM_PROMPT.md": "SYSTEM_PROMPT.md"},
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


class Registry:
    """The local registry (``[registry] backend = "local"``, the default)."""

    backend = "local"

    def __init__(self, project_root: str | Path) -> None:
        self.project_root = Path(project_root)
        self.root = self.project_root / ".cadenza" / "registry"

    def location(self, kind: str) -> str:
        """Where ``kind``'s versions live, for messages."""
        return str(self.root / kind)

    # ------------------------------------------------------------------ versions
    def check_kind(self, kind: str) -> None:
        """Refuse an artefact kind the registry does not keep (one line, CadenzaError)."""
        if kind not in KINDS:
            raise CadenzaError(f"unknown artefact kind {kind!r}; expected one of {', '.join(KINDS)}")

    def versions(self, kind: str) -> list[str]:
        self.check_kind(kind)
        d = self.root / kind
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit())

    def latest(self, kind: str) -> str | None:
        v = self.versions(kind)
        return v[-1] if v else None

    def register(self, kind: str, files: dict[str, Path | bytes], metadata: dict[str, Any] | None = None) -> str:
        """Store ``files`` as a new immutable version; returns its name (``v0001`` ...)."""
        self.check_kind(kind)
        kdir = self.root / kind
        kdir.mkdir(parents=True, exist_ok=True)
        tmp, manifest = self._stage(kdir, kind, files, metadata)
        try:
            while True:  # pick the next free name; rename is atomic and fails if it exists
                existing = self.versions(kind)
                version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
                try:
                    os.rename(tmp, kdir / version)
                    break
                except OSError:
                    if not (kdir / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._ledger({"event": "register", "kind": kind, "version": version,
                      "files": manifest["files"], "metadata": metadata or {}})
        return version

    @staticmethod
    def _stage(kdir: Path, kind: str, files: dict[str, Path | bytes],
               metadata: dict[str, Any] | None) -> tuple[Path, dict[str, Any]]:
        """Copy ``files`` into a new temporary folder under ``kdir`` with their ``manifest.json``; returns the
        folder and the manifest (the folder is removed again if anything fails)."""
        tmp = new_temp_dir(kdir, ".new-")
        try:
            manifest: dict[str, Any] = {"kind": kind, "created": _now(), "files": {}, "metadata": metadata or {}}
            for name, src in files.items():
                dst = tmp / name
                if isinstance(src, bytes):
                    dst.write_bytes(src)
                else:
                    shutil.copyfile(src, dst)
                manifest["files"][name] = sha256_file(dst)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp, manifest

    def manifest(self, kind: str, version: str) -> dict[str, Any]:
        path = self.root / kind / version / "manifest.json"
        if not path.is_file():
            raise ArtefactError(f"{kind} version {version!r} not found in {self.root / kind}")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ArtefactError(f"{path}: corrupt manifest (not JSON)") from None

    def verify(self, kind: str, version: str) -> dict[str, Any]:
        """Check every file of a version against its manifest; raise ArtefactError on any mismatch."""
        man = self.manifest(kind, version)
        for name, digest in man["files"].items():
            p = self.root / kind / version / name
            if not p.is_file():
                raise ArtefactError(f"{p}: missing file of {kind} {version}; refusing to load it")
            if sha256_file(p) != digest:
                raise ArtefactError(f"{p}: content hash does not match the registry (corrupt or tampered); "
                                    "refusing to load it")
        return man

    def path(self, kind: str, version: str, name: str) -> Path:
        """Path of one file of a verified version."""
        man = self.verify(kind, version)
        if name not in man["files"]:
            raise ArtefactError(f"{kind} {version} has no file {name!r}")
        return self.root / kind / version / name

    # ------------------------------------------------------------------ pointers
    def _pointers(self) -> dict[str, Any]:
        p = self.root / "pointers.json"
        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            raise ArtefactError(f"{p}: corrupt baseline pointers (not JSON)") from None

    def baseline(self, kind: str) -> str | None:
        self.check_kind(kind)
        return self._pointer(kind)["baseline"]

    def _pointer(self, kind: str) -> dict[str, Any]:
        """``{"baseline": version or None, "previous": [older baselines, oldest first]}`` of ``kind``."""
        cur = self._pointers().get(kind) or {}
        return {"baseline": cur.get("baseline"), "previous": list(cur.get("previous", []))}

    def _move_baseline(self, kind: str, version: str, previous: list[str]) -> None:
        """Publish ``version``'s files, then point ``kind``'s baseline at it."""
        self._publish(kind, version)
        ptr = self._pointers()
        ptr[kind] = {"baseline": version, "previous": previous}
        atomic_write_json(self.root / "pointers.json", ptr)

    def promote(self, kind: str, version: str, reasons: list[str] | None = None,
                metrics: dict[str, Any] | None = None) -> None:
        """Make ``version`` the baseline of ``kind`` and publish its files."""
        self.verify(kind, version)
        cur = self._pointer(kind)
        if cur["baseline"] == version:
            self._publish(kind, version)
            return
        prev = cur["previous"]
        if cur["baseline"]:
            prev.append(cur["baseline"])
        self._move_baseline(kind, version, prev)
        self._ledger({"event": "promote", "kind": kind, "version": version, "from": cur.get("baseline"),
                      "reasons": reasons or [], "metrics": metrics or {}})

    def rollback(self, kind: str, to: str | None = None, reason: str = "manual rollback") -> str:
        """Move the baseline back (to the previous one, or to ``to``); returns the new baseline."""
        self.check_kind(kind)
        cur = self._pointer(kind)
        prev = cur["previous"]
        if to is None:
            if not prev:
                raise CadenzaError(f"no earlier {kind} baseline to roll back to")
            target = prev.pop()
        else:
            if to not in self.versions(kind):
                raise CadenzaError(f"{kind} version {to!r} does not exist; known: "
                                   f"{', '.join(self.versions(kind)) or 'none'}")
            target = to
            prev = [v for v in prev if v != to]
            if cur.get("baseline") and cur["baseline"] != to:
                prev.append(cur["baseline"])
        self.verify(kind, target)
        self._move_baseline(kind, target, prev)
        self._ledger({"event": "rollback", "kind": kind, "version": target, "from": cur.get("baseline"),
                      "reasons": [reason]})
        return target

    def _publish(self, kind: str, version: str) -> None:
        """Copy the version's files to their published paths; a published file the version lacks is removed
        (it belonged to an earlier baseline, and the registry keeps that version's own copy)."""
        for name, rel in PUBLISH.get(kind, {}).items():
            src, dst = self.root / kind / version / name, self.project_root / rel
            if src.is_file():
                atomic_write_bytes(dst, src.read_bytes())
            elif dst.is_file():
                dst.unlink()

    def apply_verdict(self, kind: str, version: str, card: Any, promote: bool, *, no_baseline: str) -> str:
        """Record a scorecard's verdict for ``version`` and move the baseline as it says (promotion only on
        DEPLOY with ``promote``); returns one line saying what was done. ``no_baseline`` is what a BLOCK
        leaves in place when ``kind`` has no baseline yet."""
        metrics = {k: {m: v[m] for m in ("episodes", "success_rate", "collision_rate")}
                   for k, v in card.metrics.items()}
        if card.verdict == "DEPLOY" and promote:
            action = f"promoted {version} to {kind} baseline"
        elif card.verdict == "DEPLOY":
            action = f"{version} passes; not promoted (use --promote)"
        elif card.verdict == "BLOCK":
            bl = self.baseline(kind)
            action = f"blocked {version}; baseline stays {bl}" if bl else f"blocked {version}; {no_baseline}"
        else:
            action = f"{version} kept as a candidate; baseline unchanged"
        evidence = {"block": card.block, "episodes": card.episodes, "looks": max(1, len(card.looks))}
        self.record_verdict(kind, version, card.verdict, card.reasons, metrics, action, evidence)
        if card.verdict == "DEPLOY" and promote:
            self.promote(kind, version, card.reasons, metrics)
        return action

    # ------------------------------------------------------------------ ledger
    def record_verdict(self, kind: str, version: str, verdict: str, reasons: list[str],
                       metrics: dict[str, Any], action: str, evidence: dict[str, Any] | None = None) -> None:
        self._ledger({"event": "verdict", "kind": kind, "version": version, "verdict": verdict,
                      "action": action, **(evidence or {}), "reasons": reasons, "metrics": metrics})

    def record_preview(self, kind: str, version: str, card: Any) -> None:
        """Record a scorecard that decides nothing (a preview), so that its seed block counts as used."""
        self._ledger({"event": "preview", "kind": kind, "version": version, "verdict": card.verdict,
                      "block": card.block, "episodes": card.episodes})

    def blocks_used(self, kind: str, version: str) -> list[int]:
        """Held-out seed blocks the scorecards (verdicts and previews) of ``version`` used, in ledger order."""
        return [int(e["block"]) for e in self.ledger(kind) if e.get("event") in ("verdict", "preview")
                and e.get("version") == version and e.get("block") is not None]

    def next_block(self, kind: str, version: str) -> int:
        """The first held-out block no scoring of ``version`` has used yet."""
        used = self.blocks_used(kind, version)
        return max(used) + 1 if used else 0

    def _ledger(self, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"time": _now(), "user": _user(), **entry}
        line = json.dumps(entry, default=str) + "\n"
        with open(self.root / "ledger.jsonl", "a", encoding="utf-8") as f:  # append-only
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def ledger(self, kind: str | None = None) -> list[dict[str, Any]]:
        p = self.root / "ledger.jsonl"
        if not p.is_file():
            return []
        try:
            return [e for _, e in jsonl_records(p) if kind is None or e.get("kind") == kind]
        except JsonlError as e:
            raise ArtefactError(f"{p}:{e.line}: corrupt ledger line") from None

    def last_verdict(self, kind: str, version: str) -> dict[str, Any] | None:
        for e in reversed(self.ledger(kind)):
            if e.get("event") == "verdict" and e.get("version") == version:
                return e
        return None


def open_registry(project: Any) -> Registry:
    """The registry of ``project`` (a loaded ``Project`` or a project directory) as its ``[registry]``
    section says: the local one (the default; also for a directory without ``cadenza.toml``) or the
    MLflow one, which checks that its server answers before it returns (one line naming the uri)."""
    if not hasattr(project, "config"):  # a directory (or an object with a root directory)
        root = Path(project) if isinstance(project, (str, Path)) else Path(project.root)
        if not (root / "cadenza.toml").is_file():
            return Registry(root)
        from cadenza.project.config import load_project

        project = load_project(root)
    section = project.config.registry
    if section.backend == "local":
        return Registry(project.root)
    from cadenza.governance.registry_mlflow import MlflowRegistry, registry_uri

    tracking = project.config.tracking
    return MlflowRegistry(project.root, registry_uri(project.root, section.uri, tracking.uri),
                          model_prefix=project.name, experiment=tracking.experiment or project.name)
