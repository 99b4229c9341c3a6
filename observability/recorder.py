"""A LangSmith stand-in on loopback: a real HTTP server that accepts runs and keeps them, for tests and benchmarks.

    with LoopbackRecorder() as recorder:
        client = langsmith.Client(api_url=recorder.url, api_key="loopback")
        with langsmith.tracing_context(enabled=True, client=client):
            recover(...)
        client.flush()
        root = recorder.roots()[0]; [c["name"] for c in recorder.children(root["id"])]

It speaks the ingestion endpoints the langsmith client uses: `GET /info`, `POST /runs/multipart`
(zstd-compressed or not), `POST /runs/batch`, `POST /runs`, `PATCH /runs/{id}`. Posts and
patches of one run are merged in arrival order. It binds 127.0.0.1 only. `compression=True`
advertises zstd-compressed ingestion, as LangSmith does (the client then compresses in the
calling thread).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackRecorder"]

_INFO = {
    "version": "0.0.0-loopback",
    "license_expiration_time": None,
    "batch_ingest_config": {"use_multipart_endpoint": True, "scale_up_qsize_trigger": 1000,
                            "scale_up_nthreads_limit": 16, "scale_down_nempty_trigger": 4, "size_limit": 100,
                            "size_limit_bytes": 20_971_520},
    "instance_flags": {"zstd_compression_enabled": True},
}


class LoopbackRecorder:
    """Records LangSmith runs posted to http://127.0.0.1:<port>. Use as a context manager (starts and stops)."""

    def __init__(self, port: int = 0, *, compression: bool = True) -> None:
        self.info = {**_INFO, "instance_flags": {"zstd_compression_enabled": compression}}
        self.runs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackRecorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="langsmith-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.runs.clear()
            self.order.clear()
            self.requests.clear()

    # --- reading what arrived ------------------------------------------------------------------------------
    def all_runs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(self.runs[i]) for i in self.order]

    def roots(self) -> list[dict[str, Any]]:
        return [r for r in self.all_runs() if not r.get("parent_run_id")]

    def children(self, run_id: str) -> list[dict[str, Any]]:
        """Direct children of `run_id`, in execution order (dotted_order, then start time)."""
        kids = [r for r in self.all_runs() if str(r.get("parent_run_id")) == str(run_id)]
        return sorted(kids, key=lambda r: (r.get("dotted_order") or "", r.get("start_time") or ""))

    # --- ingesting -----------------------------------------------------------------------------------------
    def _merge(self, op: str, run_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            run = self.runs.get(run_id)
            if run is None:
                run = self.runs[run_id] = {"id": run_id}
                self.order.append(run_id)
            for key, value in fields.items():
                if key == "extra" and isinstance(value, dict) and isinstance(run.get("extra"), dict):
                    merged = {**run["extra"], **value}
                    if isinstance(run["extra"].get("metadata"), dict) and isinstance(value.get("metadata"), dict):
                        merged["metadata"] = {**run["extra"]["metadata"], **value["metadata"]}
                    run["extra"] = merged
                elif value is not None or op == "post":
                    run[key] = value
            run.setdefault("_ops", []).append(op)

    def _multipart(self, content_type: str, body: bytes) -> None:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            payload = part.get_payload(decode=True) or b""
            op, _, rest = name.partition(".")
            run_id, _, field = rest.partition(".")
            if op not in ("post", "patch") or not run_id:
                continue  # attachments and feedback are accepted and dropped
            data = json.loads(payload) if payload else None
            self._merge(op, run_id, {field: data} if field else (data or {}))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("content-encoding") == "zstd":
                    import zstandard

                    raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
                return raw

            def _reply(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                with recorder._lock:
                    recorder.requests.append(("GET", self.path))
                self._reply(200, recorder.info if self.path.startswith("/info") else {})

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                path = self.path.split("?")[0].rstrip("/")
                with recorder._lock:
                    recorder.requests.append(("POST", path))
                try:
                    if path.endswith("/runs/multipart"):
                        recorder._multipart(self.headers.get("content-type", ""), body)
                    elif path.endswith("/runs/batch"):
                        data = json.loads(body or b"{}")
                        for op in ("post", "patch"):
                            for run in data.get(op) or ():
                                recorder._merge(op, str(run["id"]), run)
                    elif path.endswith("/runs"):
                        run = json.loads(body or b"{}")
                        recorder._merge("post", str(run["id"]), run)
                except (ValueError, KeyError) as exc:
                    self._reply(422, {"detail": f"unreadable run payload: {exc}"})
                    return
                self._reply(202 if "multipart" in path or "batch" in path else 200, {})

            def do_PATCH(self) -> None:  # noqa: N802
                body = self._body()
                path = self.path.split("?")[0].rstrip("/")
                with recorder._lock:
                    recorder.requests.append(("PATCH", path))
                run_id = path.rsplit("/", 1)[-1]
                recorder._merge("patch", run_id, json.loads(body or b"{}"))
                self._reply(200, {})

        return Handler
