"""The model factory: the chat model for the LLM layers, from settings (never read inside nodes).

    KGOT_MODEL          `provider:model` (e.g. `openai:gpt-4o-mini`) or a bare model name
    OPENAI_API_KEY      settings.llm.api_key
    OPENAI_BASE_URL     settings.llm.base_url: OpenAI, vLLM, Ollama, any OpenAI-compatible server
    OPENROUTER_API_KEY  OpenRouter (its base URL is filled in)

OpenAI-compatible endpoints get langchain-openai's `ChatOpenAI`, with the client's own
retries at `settings.llm.client_max_retries` (0 by default: retries belong to the graph's
RetryPolicy, where they are counted). Other providers (`anthropic:...`) go through
langchain's `init_chat_model` when `langchain` and the provider package are installed.

One model object per configuration (endpoint, model, key, timeout, retries, temperature)
serves the whole process. Its async HTTP connections cannot: an httpx connection belongs to
the event loop that opened it, and langchain-openai shares one pool per endpoint across every
`ChatOpenAI` of the process, so a recovery on one loop after another loop used the pool failed
its try ("Event loop is closed", "bound to a different event loop"). `model_for_loop` gives
each running loop its own copy of the model with its own connection pool, and
`structured_runnable` keeps the structured-output runnables built on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from kgot_errors.errors import ConfigError
from kgot_errors.runtime.settings import Settings

__all__ = ["DEFAULT_MODEL", "OPENROUTER_BASE_URL", "make_model", "model_for_loop", "model_identity",
           "structured_runnable"]

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
    provider, provider package missing). The same configuration gives the same object.
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


_BUILT: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_BUILT_LOCK = threading.Lock()
_MAX_BUILT = 32


def _once(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The model built for `key` (a configuration), built on first use; the least recently used beyond 32 dropped."""
    with _BUILT_LOCK:
        if key in _BUILT:
            _BUILT.move_to_end(key)
            return _BUILT[key]
    model = build()  # outside the lock: building may import a provider package
    with _BUILT_LOCK:
        model = _BUILT.setdefault(key, model)
        _BUILT.move_to_end(key)
        while len(_BUILT) > _MAX_BUILT:
            _BUILT.popitem(last=False)
    return model


def _secret(value: str | None) -> str | None:
    """A key as it is remembered in a cache key: its digest, never the key itself."""
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def _chat_openai(settings: Settings, name: str, base_url: str | None, api_key: str) -> Any:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ConfigError("an OpenAI-compatible model needs langchain-openai: pip install langchain-openai",
                          setting="llm.model") from None
    llm = settings.llm
    key = ("openai", name, base_url, _secret(api_key), llm.timeout_seconds, llm.client_max_retries, llm.temperature)
    return _once(key, lambda: ChatOpenAI(model=name, base_url=base_url, api_key=SecretStr(api_key),
                                         timeout=llm.timeout_seconds, max_retries=llm.client_max_retries,
                                         temperature=llm.temperature, use_responses_api=False))


def _other_provider(provider: str, name: str | None, settings: Settings) -> Any:
    llm = settings.llm
    key = (provider, name, llm.base_url, _secret(llm.api_key), llm.timeout_seconds, llm.client_max_retries,
           llm.temperature)
    return _once(key, lambda: _init_other(provider, name, settings))


def _init_other(provider: str, name: str | None, settings: Settings) -> Any:
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


_RUNNABLES_PER_MODEL = 64  # structured runnables kept per model and loop (schemas beyond that are rebuilt)
_MODELS_PER_LOOP = 32


class _Bound:
    """One model as one event loop uses it: the copy with that loop's own connections, and its runnables."""

    __slots__ = ("model", "runnables", "source")

    def __init__(self, source: Any, model: Any) -> None:
        self.source = source  # held, so its id is never reused while this entry lives
        self.model = model
        self.runnables: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[int, _Bound]] = weakref.WeakKeyDictionary()
_LOOPS_LOCK = threading.Lock()


def _loop_models(loop: asyncio.AbstractEventLoop) -> OrderedDict[int, _Bound]:
    with _LOOPS_LOCK:
        models = _LOOPS.get(loop)
        if models is None:
            # a closed loop's clients are dead: drop them (their connections refer to the loop, so the weak
            # key alone would never let go)
            for closed in [other for other in _LOOPS if other.is_closed()]:
                del _LOOPS[closed]
            models = _LOOPS[loop] = OrderedDict()
        return models


def _bound(model: Any) -> _Bound:
    """The running loop's entry for `model`, made on first use."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no running loop: nothing to bind to, nothing kept
        return _Bound(model, model)
    models = _loop_models(loop)  # only this loop's thread reads and writes its own entries
    entry = models.get(id(model))
    if entry is not None and entry.source is model:
        models.move_to_end(id(model))
        return entry
    entry = models[id(model)] = _Bound(model, _with_own_connections(model))
    while len(models) > _MODELS_PER_LOOP:
        _close_soon(loop, models.popitem(last=False)[1])
    return entry


_CLOSING: set[asyncio.Task[Any]] = set()


def _close_soon(loop: asyncio.AbstractEventLoop, entry: _Bound) -> None:
    """Close the connections of a copy no longer kept (a process that makes a new model per call)."""
    client = getattr(entry.model, "root_async_client", None)
    if entry.model is entry.source or client is None or not hasattr(client, "close"):
        return
    task = loop.create_task(client.close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


def model_for_loop(model: Any) -> Any:
    """`model` as the running event loop may use it: for `ChatOpenAI`, a copy with an async HTTP client of this
    loop's own (made once per loop and model); any other model as it is.

    A model given its own `http_async_client` keeps it: the caller chose that client (and its loop).
    """
    return _bound(model).model


def _with_own_connections(model: Any) -> Any:
    root = getattr(model, "root_async_client", None)
    if root is None or getattr(model, "http_async_client", None) is not None or not hasattr(model, "model_copy"):
        return model
    client = root.copy(http_client=_async_http_client(model))
    return model.model_copy(update={"root_async_client": client, "async_client": client.chat.completions})


def _async_http_client(model: Any) -> Any:
    """A new async httpx client like the one langchain-openai would share (same timeout and socket options)."""
    timeout = getattr(model, "request_timeout", None)
    try:
        from langchain_openai.chat_models._client_utils import _build_async_httpx_client, _resolve_socket_options

        return _build_async_httpx_client(getattr(model, "openai_api_base", None), timeout,
                                         _resolve_socket_options(getattr(model, "http_socket_options", None)))
    except (ImportError, AttributeError, TypeError):  # another langchain-openai: openai's own default client
        import openai

        return openai.DefaultAsyncHttpxClient(timeout=timeout)


def structured_runnable(model: Any, method: str | None, schema: dict[str, Any] | None,
                        temperature: float | None) -> Any:
    """The runnable that asks `model` (on the running loop's own connections) for `schema` by `method` and
    returns the model's raw message, or None when this model cannot ask that way; built once per
    (model, loop, method, schema, temperature).

    `method` is json_schema, function_calling, json_mode, or None for a plain call. The raw message
    is all the LLM layers read (they validate the answer themselves), so langchain's parser is left out.
    """
    entry = _bound(model)
    key = (method, None if schema is None else json.dumps(schema, sort_keys=True, default=repr), temperature)
    if key in entry.runnables:
        entry.runnables.move_to_end(key)
        return entry.runnables[key]
    runnable = entry.runnables[key] = _build_runnable(entry.model, method, schema, temperature)
    while len(entry.runnables) > _RUNNABLES_PER_MODEL:
        entry.runnables.popitem(last=False)
    return runnable


def _build_runnable(model: Any, method: str | None, schema: dict[str, Any] | None, temperature: float | None) -> Any:
    extra = {} if temperature is None else {"temperature": temperature}
    if method is None:
        return model.bind(**extra) if extra else model
    # json mode needs no schema (the prompt carries it); langchain would only convert it, and some it cannot
    titled = None if method == "json_mode" else {**(schema or {}), "title": "corrected_output"}
    try:
        structured = model.with_structured_output(titled, method=method, **extra)
    except Exception:  # noqa: BLE001 - the integration cannot express this schema this way (KeyError, ValueError...)
        return None
    # `model.bind(...) | parser`: the bound model alone answers with the raw message
    first = getattr(structured, "first", None)
    if first is not None and _is_chat_model(getattr(first, "bound", first)):
        return first
    try:  # another shape: ask for the raw message next to the parsed value
        return _raw(model.with_structured_output(titled, method=method, include_raw=True, **extra))
    except Exception:  # noqa: BLE001 - as above
        return None


def _is_chat_model(runnable: Any) -> bool:
    from langchain_core.language_models import BaseChatModel

    return isinstance(runnable, BaseChatModel)


def _raw(runnable: Any) -> Any:
    from langchain_core.runnables import RunnableLambda

    return runnable | RunnableLambda(lambda out: out["raw"] if isinstance(out, dict) else out, name="raw_message")
