"""The OpenAI-compatible chat client (the ``openai`` SDK), its on-disk reply cache, and the llm planner.

* :mod:`cadenza.llm.settings`: where to send requests (``[llm]`` in ``cadenza.toml`` and the flags).
* :mod:`cadenza.llm.client`: one JSON reply per request; the SDK does the retries and the timeouts.
* :mod:`cadenza.llm.cache`: replies on disk, keyed by model, messages and sampling settings.
* :mod:`cadenza.llm.planner`: ``env run --policy llm``: the prompt in, one validated action step out.

The API key is read from the environment variable the config names (``GROQ_API_KEY`` by default) at
the moment a client is built, and is never printed, logged, cached or written anywhere.
"""

from cadenza.llm.client import ChatClient, LlmError
from cadenza.llm.settings import LlmSettings

__all__ = ["ChatClient", "LlmError", "LlmSettings"]
