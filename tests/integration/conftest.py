"""Integration fixtures: `flaky_server`, a real loopback HTTP service that fails on a script, then answers."""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FlakyServer:
    """Answers each request from a script of (status, headers) and counts them; 200 with JSON after the script.

    A `"hold"` entry, or `always(status)`, keeps answering that status forever. Thread-safe:
    the tests' operations, subprocesses and this server's threads all touch it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[tuple[int, dict[str, str]]] = deque()
        self._forever: tuple[int, dict[str, str]] | None = None
        self.requests = 0
        self.paths: list[str] = []
        self.url = ""

    def script(self, *responses: int | tuple[int, dict[str, str]]) -> FlakyServer:
        """Queue answers: a status code, or (status, headers); afterwards 200 `{"ok": true, "request": n}`."""
        with self._lock:
            self._script.clear()
            self._forever = None
            for r in responses:
                self._script.append((r, {}) if isinstance(r, int) else r)
        return self

    def always(self, status: int, headers: dict[str, str] | None = None) -> FlakyServer:
        with self._lock:
            self._script.clear()
            self._forever = (status, headers or {})
        return self

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            self.paths.append(path)
            n = self.requests
            if self._script:
                status, headers = self._script.popleft()
            elif self._forever is not None:
                status, headers = self._forever
            else:
                status, headers = 200, {}
        if status == 200:
            if path.endswith("/models"):  # enough of the OpenAI API for openai's models.list()
                body = {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "t"}]}
            else:
                body = {"ok": True, "request": n}
        else:
            body = {"error": {"message": f"scripted {status}", "type": "scripted", "code": status}}
        return status, headers, json.dumps(body).encode()


def _handler(server: FlakyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body would otherwise wait on delayed ACKs (40 ms)

        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = server.answer(self.path)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply  # noqa: N815

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def flaky_server() -> Iterator[FlakyServer]:
    """A FlakyServer on 127.0.0.1 (port chosen by the OS), stopped after the test."""
    state = FlakyServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="flaky-server",
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class Divide:
    """A failing operation ("divide") recording every call it gets."""

    __name__ = "divide"

    def __init__(self) -> None:
        self.calls: list[tuple[object, object]] = []

    def __call__(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a / b


@pytest.fixture
def divide() -> Divide:
    return Divide()


@pytest.fixture(scope="module")
def bwrap_sandbox():
    """The bwrap sandbox; with KGOT_REQUIRE_SERVICES=1 (CI) its absence fails instead of skipping."""
    from kgot_errors.errors import SandboxUnavailable
    from kgot_errors.sandbox import get_sandbox

    try:
        return get_sandbox("bwrap", timeout=20)
    except SandboxUnavailable as exc:
        if os.environ.get("KGOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"bwrap sandbox required here: {exc}")
        pytest.skip(f"bwrap sandbox unavailable: {exc}")
