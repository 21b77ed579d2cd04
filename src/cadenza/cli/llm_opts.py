"""The ``[llm]`` flags shared by ``env run --policy llm`` and ``env train`` (each overrides its cadenza.toml key)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cadenza.cli.common import number_check, text_check

if TYPE_CHECKING:
    from cadenza.llm.settings import LlmSettings
    from cadenza.project.config import Project


def _url(value: Any) -> Any:
    if value is not None and (len(str(value)) > 2000 or not re.fullmatch(r"https?://\S+", str(value))):
        raise typer.BadParameter(f"expected an http:// or https:// URL, got {str(value)[:80]!r}")
    return value


def _env_name(value: Any) -> Any:
    if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", str(value)):
        raise typer.BadParameter(f"expected an environment variable name (letters, digits, _; at most 100), got "
                                 f"{str(value)[:80]!r}")
    return value


ModelOpt = Annotated[str | None, typer.Option(
    "--model", callback=text_check(max_len=200), show_default=False,
    help="Model name sent to the endpoint. [default: llm.model]")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    "--base-url", callback=_url, show_default=False,
    help="OpenAI-compatible base URL (Groq, vLLM, llama.cpp, Ollama ...). [default: llm.base_url]")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", callback=number_check(gt=0.0, le=3600.0), show_default=False,
    help="Seconds one attempt may take. [default: llm.timeout_s]")]
RetriesOpt = Annotated[int | None, typer.Option(
    "--retries", callback=number_check(ge=0, le=10), show_default=False,
    help="Retries on 408/409/429/5xx and timeouts (the SDK's backoff, honouring retry-after). "
         "[default: llm.max_retries]")]
KeyEnvOpt = Annotated[str | None, typer.Option(
    "--api-key-env", callback=_env_name, show_default=False,
    help="Name of the environment variable holding the API key. [default: llm.api_key_env, GROQ_API_KEY]")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Always ask the endpoint (replies are cached in PROJECT/.cadenza/llm-cache by default).")]


def llm_settings(project: Project, *, model: str | None, base_url: str | None, timeout: float | None,
                 retries: int | None, api_key_env: str | None) -> LlmSettings:
    from cadenza.llm.settings import LlmSettings

    return LlmSettings.from_project(project, model=model, base_url=base_url, timeout_s=timeout,
                                    max_retries=retries, api_key_env=api_key_env)
