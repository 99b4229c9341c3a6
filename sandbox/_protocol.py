"""The protocol every sandbox backend implements (bwrap, docker, unsafe-subprocess)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from kgot_errors.sandbox._limits import Limits
from kgot_errors.sandbox._result import ExecResult

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Runs one Python program under `limits`; blocking; never raises for the code's own failures.

    `name` is what ExecResult.backend reports; `isolating` is False only for the unsafe backend.
    `execute` raises SandboxError when the sandbox itself cannot run (not when the code fails).
    `check` raises SandboxUnavailable with a fix-it message when this backend cannot isolate here.
    """

    name: str
    isolating: bool

    def execute(
        self, code: str, limits: Limits, *, stdin: bytes | None, files: Mapping[str, bytes]
    ) -> ExecResult: ...

    def check(self) -> None: ...

    def cleanup(self) -> int: ...
