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
its try ("Event loop is closed", "bound to a different event loop"). So the LLM layers call a
`ChatOpenAI` through its sync client, in a worker thread: that client belongs to no loop, and
its HTTP stack costs less than the async one (bench/RESULTS.md). The deadline of the call
(`call_deadline`) also bounds that thread's connect and reads, so a call given up on stops soon
after. A model whose sync client was chosen by the caller (`http_client=`) is called on its
async client instead, with a copy per running loop (`model_for_loop`) unless the caller chose
that one too. `structured_runnable` keeps the structured-output runnables built on either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import json
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import SecretStr

from kgot_errors.errors import ConfigError
from kgot_errors.runtime.settings import Settings

__all__ = ["DEFAULT_MODEL", "OPENROUTER_BASE_URL", "call_deadline", "make_model", "model_for_loop", "model_identity",
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


_RUNNABLES_PER_MODEL = 64  # structured runnables kept per model (schemas beyond that are rebuilt)
_MODELS_PER_LOOP = 32  # models kept per event loop (async path) and for the worker threads (sync path)
_MODEL_THREADS = 64  # worker threads for model calls at most (each waits on one HTTP call)


class _Bound:
    """One model as the LLM layers call it: the copy with connections of its own, and its runnables.

    `threaded`: called through its sync client in a worker thread (any loop); else through its
    async client on the one loop this entry belongs to.
    """

    __slots__ = ("lock", "model", "runnables", "source", "threaded")

    def __init__(self, source: Any, model: Any, *, threaded: bool = False) -> None:
        self.source = source  # held, so its id is never reused while this entry lives
        self.model = model
        self.threaded = threaded
        self.runnables: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()


_THREADED: OrderedDict[int, _Bound] = OrderedDict()
_THREADED_LOCK = threading.Lock()
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
    """The entry the LLM layers call `model` through, made on first use (per process, or per running loop)."""
    with _THREADED_LOCK:
        entry = _THREADED.get(id(model))
        if entry is not None and entry.source is model:
            _THREADED.move_to_end(id(model))
            return entry
    threaded = _with_own_sync_client(model)
    if threaded is not None:
        with _THREADED_LOCK:
            entry = _THREADED.setdefault(id(model), _Bound(model, threaded, threaded=True))
            while len(_THREADED) > _MODELS_PER_LOOP:
                _THREADED.popitem(last=False)  # its client closes when collected: it belongs to no loop
        return entry
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
    """`model` as the LLM layers call it from the running loop: for `ChatOpenAI`, a copy with HTTP clients of
    its own (a sync one, used from worker threads, shared by every loop; or, when the caller chose the
    sync client, an async one for this loop alone); any other model as it is.

    A model given its own `http_async_client` (and `http_client`) keeps them: the caller chose them.
    """
    return _bound(model).model


def _with_own_connections(model: Any) -> Any:
    root = getattr(model, "root_async_client", None)
    if root is None or getattr(model, "http_async_client", None) is not None or not hasattr(model, "model_copy"):
        return model
    client = root.copy(http_client=_async_http_client(model))
    return model.model_copy(update={"root_async_client": client, "async_client": client.chat.completions})


def _with_own_sync_client(model: Any) -> Any | None:
    """A copy of a `ChatOpenAI` whose sync client keeps `call_deadline`; None for any other model, or one whose
    sync client the caller chose (`http_client`, `openai_proxy`)."""
    root = getattr(model, "root_client", None)
    if (root is None or not hasattr(root, "copy") or not hasattr(model, "model_copy")
            or getattr(model, "http_client", None) is not None or getattr(model, "openai_proxy", None)):
        return None
    client = root.copy(http_client=_deadline_http_client(getattr(model, "request_timeout", None)))
    return model.model_copy(update={"root_client": client, "client": client.chat.completions})


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("kgot_model_deadline", default=None)


@contextlib.contextmanager
def call_deadline(seconds: float) -> Iterator[None]:
    """Model calls made inside (and the worker threads they run in) end within `seconds` from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@functools.cache
def _deadline_transport_class() -> type:
    """An httpx transport (the httpx openai uses) that cuts each request's timeouts to the call's deadline, and
    its response stream at it (an answer trickled byte by byte must not outlive the call)."""
    import importlib

    import openai

    httpx = importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0])

    class DeadlineStream(httpx.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, deadline: float, request: Any) -> None:
            self._inner, self._deadline, self._request = inner, deadline, request

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if time.monotonic() > self._deadline:
                    raise httpx.ReadTimeout("the call's deadline passed", request=self._request)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class DeadlineTransport(httpx.BaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._inner = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1000,
                                                                  max_keepalive_connections=100))

        def handle_request(self, request: Any) -> Any:
            deadline = _DEADLINE.get()
            if deadline is None:
                return self._inner.handle_request(request)
            left = deadline - time.monotonic()
            if left <= 0:
                raise httpx.ConnectTimeout("the call's deadline passed", request=request)
            timeouts = dict(request.extensions.get("timeout") or {})
            request.extensions["timeout"] = {name: left if timeouts.get(name) is None else min(timeouts[name], left)
                                             for name in ("connect", "read", "write", "pool")}
            response = self._inner.handle_request(request)
            return httpx.Response(status_code=response.status_code, headers=response.headers,
                                  stream=DeadlineStream(response.stream, deadline, request),
                                  extensions=response.extensions)

        def close(self) -> None:
            self._inner.close()

    return DeadlineTransport


def _deadline_http_client(timeout: Any) -> Any:
    import openai

    return openai.DefaultHttpxClient(transport=_deadline_transport_class()(), timeout=timeout)


class _Workers:
    """Daemon threads for sync model calls, started as needed up to a limit and then reused.

    Daemon, so a call given up on never holds up the process's exit (its own reads end at the
    call's deadline anyway).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = threading.Semaphore(0)  # released by a worker each time it finishes a job (as in CPython's pool)

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, job))
        if not self._idle.acquire(timeout=0):
            with self._lock:
                if self._threads < self._limit:
                    self._threads += 1
                    threading.Thread(target=self._work, name=f"kgot-model-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            future, job = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting call as its outcome
                    future.set_exception(exc)
            del future, job
            self._idle.release()


_WORKERS = _Workers(_MODEL_THREADS)


class _Threaded:
    """A runnable awaited through its sync `invoke` in a worker thread, with the caller's context (tracing,
    the call's deadline); `ainvoke` returns when the call does, or is cancelled at once."""

    def __init__(self, runnable: Any) -> None:
        self.runnable = runnable

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self.runnable.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        context = contextvars.copy_context()
        return await asyncio.wrap_future(_WORKERS.submit(
            functools.partial(context.run, self.runnable.invoke, input, config, **kwargs)))


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
    with entry.lock:
        if key in entry.runnables:
            entry.runnables.move_to_end(key)
            return entry.runnables[key]
    runnable = _build_runnable(entry.model, method, schema, temperature)
    if runnable is not None and entry.threaded:
        runnable = _Threaded(runnable)
    with entry.lock:
        runnable = entry.runnables.setdefault(key, runnable)
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
