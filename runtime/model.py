"""The model factory: the chat model for the LLM layers, from settings (never read inside nodes).

    KGOT_MODEL          `provider:model` (e.g. `openai:gpt-4o-mini`) or a bare model name
    OPENAI_API_KEY      settings.llm.api_key
    OPENAI_BASE_URL     settings.llm.base_url: OpenAI, vLLM, Ollama, any OpenAI-compatible server
    OPENROUTER_API_KEY  OpenRouter (its base URL is filled in)

OpenAI-compatible endpoints get langchain-openai's `ChatOpenAI`, with the client's own
retries at `settings.llm.client_max_retries` (0 by default: retries belong to the graph's
RetryPolicy, where they are counted). Other providers (`anthropic:...`) go through
langchain's `init_chat_model` when `langchain` and the provider package are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from kgot_errors.errors import ConfigError
from kgot_errors.runtime.settings import Settings

__all__ = ["DEFAULT_MODEL", "OPENROUTER_BASE_URL", "make_model", "model_identity"]

DEFAULT_MODEL = "gpt-4o-mini"
"""The model used when an endpoint or key is configured but KGOT_MODEL is not."""
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
_OPENAI_COMPATIBLE = {"openai", "openrouter"}
_LOCAL_KEY = "not-needed"  # vLLM and Ollama accept any key; the client insists on one


def _split(spec: str | None) -> tuple[str | None, str | None]:
    """`openai:gpt-4o` -> ("openai", "gpt-4o"); `gpt-4o` -> (None, "gpt-4o"); OpenRouter's `org/model` stays whole."""
    if not spec:
        return None, None
    provider, sep, name = spec.partition(":")
    if sep and provider and "/" not in provider:
        return provider.strip().lower(), name.strip() or None
    return None, spec.strip()


def make_model(settings: Settings, environ: Mapping[str, str] | None = None) -> Any | None:
    """The configured chat model, or None when nothing is configured (the LLM layers then record `skipped`).

    `environ` is consulted for OPENROUTER_API_KEY only; everything else comes from
    `settings` (load_settings maps OPENAI_API_KEY, OPENAI_BASE_URL and KGOT_MODEL there).
    Raises ConfigError for a model that is named but cannot be reached (no key, unknown
    provider, provider package missing).
    """
    llm = settings.llm
    env = os.environ if environ is None else environ
    openrouter_key = env.get("OPENROUTER_API_KEY") or None
    provider, name = _split(llm.model)
    if provider is None and llm.model is None and not (llm.api_key or llm.base_url or openrouter_key):
        return None
    if provider is not None and provider not in _OPENAI_COMPATIBLE:
        return _other_provider(provider, name, settings)
    use_openrouter = provider == "openrouter" or (
        provider is None and not llm.api_key and not llm.base_url and openrouter_key is not None)
    if use_openrouter:
        if not openrouter_key:
            raise ConfigError(f"KGOT_MODEL={llm.model} needs OPENROUTER_API_KEY", setting="llm.model")
        return _chat_openai(settings, name or f"openai/{DEFAULT_MODEL}", llm.base_url or OPENROUTER_BASE_URL,
                            openrouter_key)
    if not llm.api_key and not llm.base_url:
        raise ConfigError(f"KGOT_MODEL={llm.model} needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                          "OpenAI-compatible server (vLLM, Ollama)", setting="llm.api_key")
    return _chat_openai(settings, name or DEFAULT_MODEL, llm.base_url, llm.api_key or _LOCAL_KEY)


def _chat_openai(settings: Settings, name: str, base_url: str | None, api_key: str) -> Any:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ConfigError("an OpenAI-compatible model needs langchain-openai: pip install langchain-openai",
                          setting="llm.model") from None
    llm = settings.llm
    return ChatOpenAI(model=name, base_url=base_url, api_key=SecretStr(api_key), timeout=llm.timeout_seconds,
                      max_retries=llm.client_max_retries, temperature=llm.temperature, use_responses_api=False)


def _other_provider(provider: str, name: str | None, settings: Settings) -> Any:
    llm = settings.llm
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ConfigError(f"provider {provider!r} needs langchain's init_chat_model: pip install langchain "
                          f"langchain-{provider}", setting="llm.model") from None
    options: dict[str, Any] = {"timeout": llm.timeout_seconds, "max_retries": llm.client_max_retries,
                               "temperature": llm.temperature}
    if llm.api_key:
        options["api_key"] = llm.api_key
    if llm.base_url:
        options["base_url"] = llm.base_url
    try:
        return init_chat_model(f"{provider}:{name or ''}", **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot build model {llm.model!r}: {exc}", setting="llm.model") from None


def model_identity(model: Any) -> str:
    """A stable name for a chat model (class, model name, endpoint, parameters): what corrections are cached by."""
    if model is None:
        return "none"
    cls = type(model)
    try:
        params = dict(model._identifying_params)
    except Exception:  # noqa: BLE001 - any model may lack or break this optional property
        params = {}
    params["base_url"] = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    text = json.dumps(params, sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    name = params.get("model_name") or params.get("model") or cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}:{name}:{digest}"
