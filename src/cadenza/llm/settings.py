"""Where the LLM requests go: ``[llm]`` in ``cadenza.toml``, overridden by command-line flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.project.config import Project


class MissingKeyError(CadenzaError):
    """No API key in the environment variable the config names (exit code 2: a setup problem)."""

    exit_code = 2


@dataclass(frozen=True)
class LlmSettings:
    """An OpenAI-compatible endpoint and how to talk to it (the key itself is not held here)."""

    base_url: str = "https://api.groq.com/openai/v1"
    model: str = "llama-3.3-70b-versatile"
    api_key_env: str = "GROQ_API_KEY"  # the *name* of the variable holding the key
    timeout_s: float = 30.0  # per attempt
    max_retries: int = 2  # the SDK's retries (408/409/429/5xx and timeouts, honouring retry-after)
    temperature: float = 0.0
    max_tokens: int = 256

    @classmethod
    def from_project(cls, project: Project, **overrides: Any) -> LlmSettings:
        """``[llm]`` of the project, with every non-``None`` keyword in ``overrides`` replacing its key."""
        cfg = project.config.llm
        base = cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)})
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def sampling(self) -> dict[str, Any]:
        """The sampling settings that change a reply (part of the cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def has_key(self) -> bool:
        return bool(os.environ.get(self.api_key_env, "").strip())

    def api_key(self) -> str:
        """The key, read from the environment now (never stored on this object)."""
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise MissingKeyError(f"no API key: set the environment variable {self.api_key_env} (named by "
                                  f"[llm].api_key_env in cadenza.toml), or use --offline")
        return key
