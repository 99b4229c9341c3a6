"""A loopback OpenAI-compatible chat server: real HTTP on 127.0.0.1, scripted replies, every request recorded.

    with loopback_openai(["not json", '{"a": 1}']) as server:
        model = loopback_model(server)          # langchain-openai's ChatOpenAI, pointed here
        ...
        assert len(server.requests) == 2

A script is a sequence of replies, served in order, or one function of the request. A
reply is a `Reply`, a string (the assistant's answer, shaped to what the request asked
for: a tool call when the client forced one, plain content otherwise), or a function of
the `Request` returning either. A request beyond the end of a script is answered 400
("script exhausted", permanent, so nothing retries it) and counted in `overruns`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "LoopbackOpenAI",
    "Reply",
    "Request",
    "answer",
    "by_layer",
    "chat",
    "empty_choices",
    "error",
    "garbage",
    "layer_of",
    "loopback_model",
    "loopback_openai",
    "slow",
    "trickle",
]

DEFAULT_USAGE = (10, 5)
"""Prompt and completion tokens every scripted answer reports unless told otherwise."""


@dataclass(frozen=True)
class Request:
    """One request as the server received it: the path and the decoded JSON body."""

    path: str
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def text(self) -> str:
        """Every message's text content, joined: what the model was shown."""
        parts = []
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            parts.append(str(content or ""))
        return "\n".join(parts)

    @property
    def forced_tool(self) -> str | None:
        """The function name the client forced with tool_choice (function calling), if any."""
        choice = self.body.get("tool_choice")
        if isinstance(choice, dict):
            return (choice.get("function") or {}).get("name")
        tools = self.body.get("tools") or []
        if choice in ("required", "any") and tools:
            return tools[0]["function"]["name"]
        return None

    @property
    def response_format(self) -> str | None:
        """`json_schema`, `json_object` or None."""
        fmt = self.body.get("response_format")
        return fmt.get("type") if isinstance(fmt, dict) else None


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer. `body` is JSON data or raw bytes; `delay` seconds pass before it is sent.

    With `trickle`, the body goes out one byte every `trickle` seconds (the headers at once): each
    read arrives well inside a client's read timeout while the whole answer takes far longer.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes | bytearray):
            return bytes(self.body)
        return json.dumps(self.body).encode()


def _completion(message: dict[str, Any], *, finish_reason: str, usage: tuple[int, int] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 0,
        "model": "loopback",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        prompt, completion = usage
        body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}
    return body


def chat(
    content: str | None,
    *,
    tool: str | None = None,
    refusal: str | None = None,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = DEFAULT_USAGE,
) -> Reply:
    """A chat completion whose message is `content`; with `tool`, a call of that function, `content` its arguments."""
    message: dict[str, Any] = {"role": "assistant", "content": None if tool else content}
    if tool:
        message["tool_calls"] = [{"id": "call_loopback", "type": "function",
                                  "function": {"name": tool, "arguments": content or ""}}]
    if refusal is not None:
        message["refusal"] = refusal
    reason = finish_reason or ("tool_calls" if tool else "stop")
    return Reply(200, _completion(message, finish_reason=reason, usage=usage))


def answer(text: str, *, usage: tuple[int, int] | None = DEFAULT_USAGE) -> Callable[[Request], Reply]:
    """`text` shaped to the request: a call of the forced function, else plain content."""
    return lambda request: chat(text, tool=request.forced_tool, usage=usage)


def error(status: int, message: str = "", *, retry_after: float | str | None = None,
          kind: str = "loopback_error") -> Reply:
    """An OpenAI-style error body with `status` (and a Retry-After header when given)."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message or f"scripted HTTP {status}", "type": kind, "code": status}}
    return Reply(status, body, headers)


def garbage(body: bytes = b"<html>upstream hiccup</html>", status: int = 200) -> Reply:
    """A body that is not the JSON the client expects."""
    return Reply(status, body)


def empty_choices(usage: tuple[int, int] | None = DEFAULT_USAGE) -> Reply:
    """A well-formed completion with no choices at all."""
    body = _completion({}, finish_reason="stop", usage=usage)
    body["choices"] = []
    return Reply(200, body)


def slow(seconds: float, reply: Reply | str) -> Reply:
    """`reply`, sent only after `seconds` (to outlast a client's timeout)."""
    base = chat(reply) if isinstance(reply, str) else reply
    return replace(base, delay=seconds)


def trickle(seconds_per_byte: float, reply: Reply | str) -> Reply:
    """`reply`, its body sent one byte every `seconds_per_byte` (to outlast a deadline on the whole call
    while never tripping a per-read timeout)."""
    base = chat(reply) if isinstance(reply, str) else reply
    return replace(base, trickle=seconds_per_byte)


def layer_of(request: Request) -> str | None:
    """Which LLM layer of kgot-errors sent the request (llm_fix, refine, vote), from its task line."""
    from kgot_errors.nodes._prompts import TASKS

    text = request.text
    return next((layer for layer, task in TASKS.items() if task in text), None)


def by_layer(**scripts: Iterable[Any] | Callable[[Request], Any]) -> Callable[[Request], Any]:
    """A script that answers each LLM layer from its own queue (or function): `by_layer(llm_fix=[...], vote=f)`.

    Thread-safe, for vote's parallel samples. A layer without a script, or past the end of
    its queue, gets a 400 "script exhausted".
    """
    lock = threading.Lock()
    queues = {name: s if callable(s) else deque(s) for name, s in scripts.items()}

    def step(request: Request) -> Any:
        layer = layer_of(request)
        with lock:
            script = queues.get(layer or "")
            if callable(script):
                return script
            if script:
                return script.popleft()
        return error(400, f"loopback script exhausted for layer {layer}", kind="script_exhausted")

    return step


Script = Iterable[Any] | Callable[[Request], Any]


class LoopbackOpenAI:
    """The running server: `base_url` for a client, `requests` as received, `overruns` past the script.

    `latencies` holds, per answered request, the seconds the server spent on it (body read to
    response written, scripted delays included): what a client's own overhead is measured against.
    """

    def __init__(self, script: Script) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._function = script if callable(script) else None
        self._queue: deque[Any] = deque() if callable(script) else deque(script)
        self.requests: list[Request] = []
        self.latencies: list[float] = []
        self.overruns = 0
        self.base_url = ""

    def __str__(self) -> str:
        return self.base_url

    def push(self, *replies: Any) -> None:
        """Queue more replies (a function script ignores the queue)."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _resolve(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._function is not None:
                step: Any = self._function
            elif self._queue:
                step = self._queue.popleft()
            else:
                self.overruns += 1
                return error(400, "loopback script exhausted", kind="script_exhausted")
        while callable(step):
            step = step(request)
        if isinstance(step, str):
            return chat(step, tool=request.forced_tool)
        if not isinstance(step, Reply):
            raise TypeError(f"a script step must give a Reply or str, not {type(step).__name__}")
        return step

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _handler(server: LoopbackOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            started = time.perf_counter()
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_undecodable": raw.decode("utf-8", "replace")}
            if not self.path.endswith("/chat/completions"):
                self._send(error(404, f"no route {self.path}"))
                return
            try:
                reply = server._resolve(Request(self.path, body))
            except Exception as exc:  # noqa: BLE001 - a broken script is the test's bug: answer it visibly
                reply = error(400, f"loopback script raised {type(exc).__name__}: {exc}", kind="script_error")
            server._wait(reply.delay)
            self._send(reply)
            with server._lock:
                server.latencies.append(time.perf_counter() - started)

        def _send(self, reply: Reply) -> None:
            payload = reply.encoded()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.trickle <= 0:
                    self.wfile.write(payload)
                    return
                self.wfile.flush()
                for i in range(len(payload)):
                    if server._stopping.wait(reply.trickle):
                        return
                    self.wfile.write(payload[i:i + 1])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): nothing to answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that closed its connection (its deadline, its loop's end): nothing to report
        super().handle_error(request, client_address)


@contextlib.contextmanager
def loopback_openai(script: Script = ()) -> Iterator[LoopbackOpenAI]:
    """Start a LoopbackOpenAI on 127.0.0.1 (port chosen by the OS); stop it on exit.

    `server.base_url` ends in `/v1`, as OpenAI clients expect.
    """
    server = LoopbackOpenAI(script)
    httpd = _Server(("127.0.0.1", 0), _handler(server))
    server.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              name="loopback-openai", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def loopback_model(server: LoopbackOpenAI | str, *, model: str = "loopback-model", timeout: float = 10.0,
                   **kwargs: Any) -> Any:
    """langchain-openai's ChatOpenAI aimed at the loopback server, with its own retries off."""
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    options: dict[str, Any] = {"max_retries": 0, "temperature": 0.0, "use_responses_api": False}
    options.update(kwargs)
    return ChatOpenAI(model=model, base_url=str(server), api_key=SecretStr("loopback-key"), timeout=timeout, **options)
