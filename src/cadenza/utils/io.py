"""Atomic file writes and content hashes: a crash never leaves a half-written artefact."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def atomic_write_with(path: str | Path, writer: Callable[[str], Any]) -> None:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` gives (``0o666`` less the umask), not
    ``tempfile.mkstemp``'s owner-only ``0o600``: a registry or a policy file is read by other users and services."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        writer(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> str:
    """A new, empty file beside ``path`` with a unique hidden name, created with mode ``0o666`` (the umask applies)."""
    def create(tmp: Path) -> None:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))

    return str(_create_unique(path.parent, f".{path.name}.", ".tmp", create))


def new_temp_dir(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new, empty folder in ``parent`` with a unique name, created with mode ``0o777`` (the umask applies), to be
    renamed into place once full: not ``tempfile.mkdtemp``'s owner-only ``0o700``, which a registry version or a
    dataset renamed from it would keep."""
    parent.mkdir(parents=True, exist_ok=True)
    return _create_unique(parent, prefix, suffix, lambda p: p.mkdir(mode=0o777))


def _create_unique(parent: Path, prefix: str, suffix: str, create: Callable[[Path], Any]) -> Path:
    """``create(path)`` on a new random name ``parent / prefix<hex>suffix``; ``create`` must fail with
    ``FileExistsError`` when the name is taken (``O_EXCL``, ``mkdir``), and then another name is drawn."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            create(path)
            return path
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class JsonlError(ValueError):
    """A line of a JSON-lines file that is not JSON (``path``, 1-based ``line``, the parser's ``error``)."""

    def __init__(self, path: Path, line: int, error: json.JSONDecodeError) -> None:
        super().__init__(f"{path}:{line}: not JSON ({error})")
        self.path, self.line, self.error = path, line, error


def jsonl_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for every non-blank line of a JSON-lines file, 1-based; a line that
    is not JSON raises :class:`JsonlError` (callers turn it into their own one-line message)."""
    path = Path(path)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise JsonlError(path, i, e) from None
        yield i, value
