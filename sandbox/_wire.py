"""The host's side of the supervisor's protocol: the program as one stdin payload, the framed output read back."""

from __future__ import annotations

import ast
import functools
import marshal
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgot_errors.errors import SandboxError

__all__ = ["MAX_PAYLOAD", "Deframer", "Framed", "payload", "supervisor_argv", "supervisor_code", "supervisor_source"]

MAX_PAYLOAD = 256 << 20
_FRAME = struct.Struct("!BI")
_OUT, _ERR, _VERDICT, _FAIL = 1, 2, 3, 9


@functools.cache
def supervisor_source() -> str:
    """The supervisor's source, passed as `python -c` (our code, never the program's)."""
    return (Path(__file__).with_name("_supervisor.py")).read_text(encoding="utf-8")


# Reads the supervisor as a code object from the first N bytes of stdin (the payload follows): saves
# compiling its source in every run. Only for an interpreter of this very version (marshal is not portable).
_BOOT = (
    "import marshal, os, sys\n"
    "n = int(sys.argv.pop(1)); b = b''\n"
    "while len(b) < n:\n"
    "    c = os.read(0, n - len(b))\n"
    "    if not c: raise SystemExit(125)\n"
    "    b += c\n"
    "del n, c\n"
    "exec(marshal.loads(b))\n"
)


@functools.cache
def supervisor_code() -> bytes:
    """The supervisor compiled by this interpreter, marshalled (for `supervisor_argv(compiled=True)`)."""
    return marshal.dumps(compile(supervisor_source(), "<kgot-supervisor>", "exec"))


def supervisor_argv(python: str, *, deadline: float, uid: int, cap: int, cpu_seconds: float, scratch: str,
                    site: bool = False, compiled: bool = False) -> list[str]:
    """argv that starts the supervisor (isolated mode; without `site`, only the standard library).

    `compiled`: `python` is this interpreter's version and its stdin starts with supervisor_code().
    """
    start = ["-c", _BOOT, str(len(supervisor_code()))] if compiled else ["-c", supervisor_source()]
    return [python, "-I", "-B", *([] if site else ["-S"]), *start,
            repr(deadline), str(uid), str(cap), repr(float(cpu_seconds)), scratch]


def _blob(data: bytes, fmt: str) -> bytes:
    return struct.pack(fmt, len(data)) + data


def payload(code: str, stdin: bytes | None, files: Mapping[str, bytes]) -> bytes:
    """code, stdin and files as the one length-prefixed message the supervisor reads from its stdin."""
    if "\x00" in code:
        raise SandboxError("code contains a NUL character and cannot be passed to the interpreter")
    parts = [_blob(code.encode("utf-8", "surrogatepass"), "!I"),
             struct.pack("!q", -1) if stdin is None else _blob(stdin, "!q"),
             struct.pack("!I", len(files))]
    for name, data in files.items():
        parts += [_blob(name.encode("utf-8", "surrogatepass"), "!I"), _blob(data, "!Q")]
    body = b"".join(parts)
    if len(body) > MAX_PAYLOAD:
        raise SandboxError(f"code, stdin and files are {len(body)} bytes; the sandbox accepts at most {MAX_PAYLOAD}")
    return struct.pack("!Q", len(body)) + body


@dataclass(frozen=True, slots=True)
class Framed:
    """What the supervisor sent: the program's (capped) output, its verdict, or its own failure."""

    stdout: bytes
    stderr: bytes
    verdict: dict[str, Any] | None
    failure: str | None


class Deframer:
    """Splits the supervisor's stdout into frames as bytes arrive; keeps at most what the caps allow."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._buf = bytearray()
        self._streams = {_OUT: bytearray(), _ERR: bytearray()}
        self._verdict: bytes | None = None
        self._failure: bytes | None = None
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self._buf += data
        while len(self._buf) >= _FRAME.size:
            kind, size = _FRAME.unpack_from(self._buf)
            if kind not in (_OUT, _ERR, _VERDICT, _FAIL) or size > max(self._cap, 1 << 16) + (1 << 16):
                self.broken = True  # not the supervisor speaking: nothing after this is believed
                return
            if len(self._buf) < _FRAME.size + size:
                return
            chunk = bytes(self._buf[_FRAME.size : _FRAME.size + size])
            del self._buf[: _FRAME.size + size]
            if kind in self._streams:
                room = self._cap - len(self._streams[kind])
                self._streams[kind] += chunk[: max(room, 0)]
            elif kind == _VERDICT and self._verdict is None:
                self._verdict = chunk
            elif kind == _FAIL and self._failure is None:
                self._failure = chunk

    def result(self) -> Framed:
        verdict = None
        if self._verdict is not None and not self.broken:
            try:
                parsed = ast.literal_eval(self._verdict.decode("utf-8", "replace"))
                verdict = parsed if isinstance(parsed, dict) else None
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                verdict = None
        failure = self._failure.decode("utf-8", "replace") if self._failure is not None else None
        return Framed(bytes(self._streams[_OUT]), bytes(self._streams[_ERR]), verdict, failure)
