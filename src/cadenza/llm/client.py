"""One chat-completions request -> one reply text, through the ``openai`` SDK.

The SDK does the retries (408, 409, 429 and 5xx, with exponential backoff, honouring ``retry-after``)
and the per-attempt timeout; this module adds the reply cache, a call budget, counts, and one-line
errors. The API key is read from the environment when the client is built and passed to the SDK; it
is never printed, logged, cached or written, and it is masked out of any error text a server sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.llm.cache import ReplyCache, request_key
from cadenza.llm.settings import LlmSettings

Messages = list[dict[str, str]]


class LlmError(CadenzaError):
    """The endpoint could not give a reply (one line; exit code 1)."""


class LlmAuthError(LlmError):
    """401 or 403: the key is missing, wrong or not allowed."""


class LlmTimeoutError(LlmError):
    """No reply within the timeout, after the retries."""


class LlmReplyError(LlmError):
    """A reply that is not the JSON object asked for."""


class LlmBudgetError(LlmError):
    """The call budget is spent."""


@dataclass
class CallCounts:
    requests: int = 0  # requests sent (each may have been retried inside the SDK)
    cache_hits: int = 0
    failures: int = 0  # requests that ended in an error after the retries

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "failures": self.failures}


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply (a surrounding Markdown code fence is allowed); else :class:`LlmReplyError`."""
    m = _FENCE.match(text)
    body = m.group(1) if m else text.strip()
    try:
        obj = json.loads(body)
    except ValueError as e:
        shown = body[:80].replace("\n", " ")
        raise LlmReplyError(f"the model's reply is not JSON ({e.msg} at column {e.colno}): {shown!r}") from None
    if not isinstance(obj, dict):
        raise LlmReplyError(f"the model's reply is JSON but not an object (got {type(obj).__name__})")
    return obj


class ChatClient:
    """Chat completions against an OpenAI-compatible endpoint, with a reply cache and a call budget.

    ``cache`` is ``None`` for ``--no-cache``; ``budget`` is the most requests this client may send
    (cache hits are free), ``None`` for no limit.
    """

    def __init__(self, settings: LlmSettings, cache: ReplyCache | None = None, budget: int | None = None) -> None:
        try:
            import openai  # the llm extra; imported here so the rest of cadenza works without it
        except ImportError:
            raise LlmError("the LLM client needs the openai package: pip install 'cadenza[llm]'") from None

        self.settings = settings
        self.cache = cache
        self.budget = budget
        self.counts = CallCounts()
        key = settings.api_key()
        self._mask = key
        self._sdk = openai.OpenAI(api_key=key, base_url=settings.base_url, timeout=settings.timeout_s,
                                  max_retries=settings.max_retries)
        self._openai = openai

    @property
    def label(self) -> str:
        return f"{self.settings.model} at {self.settings.base_url}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._mask, "***") if self._mask else text

    def complete(self, messages: Messages, *, json_mode: bool = True) -> str:
        """The reply text for ``messages`` (from the cache when it holds it)."""
        s = self.settings
        sampling = {**s.sampling(), "json": json_mode}
        key = request_key(s.base_url, s.model, messages, sampling)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.counts.cache_hits += 1
                return hit
        if self.budget is not None and self.counts.requests >= self.budget:
            raise LlmBudgetError(f"llm: the call budget ({self.budget} requests) is spent; raise --budget")
        self.counts.requests += 1
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        try:
            resp = self._sdk.chat.completions.create(model=s.model, messages=messages,  # type: ignore[arg-type]
                                                     temperature=s.temperature, max_tokens=s.max_tokens, **extra)
        except self._openai.APIError as e:
            self.counts.failures += 1
            raise self._error(e) from None
        choices = getattr(resp, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message else None
        if not isinstance(text, str) or not text.strip():
            self.counts.failures += 1
            raise LlmReplyError(f"llm: {self.label} sent an empty reply")
        if self.cache is not None:
            self.cache.put(key, s.model, text)
        return text

    def complete_json(self, messages: Messages) -> dict[str, Any]:
        return parse_json_object(self.complete(messages))

    def _error(self, e: Exception) -> LlmError:
        o, s = self._openai, self.settings
        tries = f"{s.max_retries} retr{'y' if s.max_retries == 1 else 'ies'}"
        if isinstance(e, o.APITimeoutError):
            return LlmTimeoutError(f"llm: no reply from {s.base_url} within {s.timeout_s:g} s, after {tries} "
                                   f"(raise [llm].timeout_s or --timeout)")
        if isinstance(e, o.APIConnectionError):
            return LlmError(f"llm: cannot reach {s.base_url} after {tries} ({self._scrub(str(e))[:160]})")
        if isinstance(e, (o.AuthenticationError, o.PermissionDeniedError)):
            code = e.status_code
            return LlmAuthError(f"llm: {s.base_url} refused the key in ${s.api_key_env} (HTTP {code}); "
                                f"check the key and that it may use model {s.model!r}")
        if isinstance(e, o.APIStatusError):
            detail = self._scrub(_short_message(e))
            after = f" after {tries}" if e.status_code in (408, 409, 429) or e.status_code >= 500 else ""
            return LlmError(f"llm: HTTP {e.status_code} from {s.base_url}{after}: {detail}")
        return LlmError(f"llm: request to {s.base_url} failed: {self._scrub(str(e))[:160]}")


def _short_message(e: Any) -> str:
    body = getattr(e, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else str(err)
    text = str(msg or getattr(e, "message", "") or "no detail").replace("\n", " ")
    return text[:160]
