"""On-disk cache of LLM replies: ``<project>/.cadenza/llm-cache/<sha256>.json``.

The key is the SHA-256 of the endpoint (base URL), the model, the messages and the sampling settings
(never the API key), so a re-run of the same requests gives the same replies and works offline, and
two servers that serve a model under the same name never answer from each other's replies.
Each entry is written atomically and holds only the request's hash inputs' digest, the model and the
reply text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cadenza.utils.io import atomic_write_json

CACHE_DIR = Path(".cadenza") / "llm-cache"


def request_key(endpoint: str, model: str, messages: list[dict[str, str]], sampling: dict[str, Any]) -> str:
    blob = json.dumps({"endpoint": endpoint.rstrip("/"), "model": model, "messages": messages,
                       "sampling": sampling}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplyCache:
    """Replies by request key; a corrupt entry is a miss (and is overwritten by the next reply)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    @classmethod
    def for_project(cls, project_root: Path) -> ReplyCache:
        return cls(Path(project_root) / CACHE_DIR)

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        p = self._path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        reply = entry.get("reply") if isinstance(entry, dict) else None
        return reply if isinstance(reply, str) and entry.get("key") == key else None

    def put(self, key: str, model: str, reply: str) -> None:
        atomic_write_json(self._path(key), {"key": key, "model": model, "reply": reply})
