"""The original system's executor API (PythonExecutorManager.execute_code_safely) on top of Sandbox."""

from __future__ import annotations

import logging
from typing import Any

from kgot_errors.errors import SandboxError
from kgot_errors.sandbox._limits import Limits, parse_size
from kgot_errors.sandbox._sandbox import BackendName, Sandbox, get_sandbox

__all__ = ["PythonExecutorManager"]

log = logging.getLogger(__name__)


class PythonExecutorManager:
    """Drop-in for the original manager: same constructor and result keys, real isolation underneath.

    `container_image` is used by the docker backend only; the original "python:3.9-slim" default
    (a registry image) maps to the locally built sandbox image. `execution_context` describes the
    run (it is logged, as the original did); it is never executed.
    """

    def __init__(
        self,
        container_image: str = "python:3.9-slim",
        default_timeout: float = 30,
        memory_limit: str = "256m",
        cpu_limit: float = 0.5,
        *,
        backend: BackendName = "auto",
        sandbox: Sandbox | None = None,
        max_concurrent: int = 5,
    ) -> None:
        self.container_image = container_image
        self.default_timeout = float(default_timeout)
        self.memory_limit = memory_limit
        self.cpu_limit = float(cpu_limit)
        self._backend = backend
        self._max_concurrent = max_concurrent
        self._sandbox = sandbox
        self._limits = Limits(timeout=self.default_timeout, memory=parse_size(memory_limit), cpus=self.cpu_limit)

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, chosen on first use (raises SandboxUnavailable when none isolates here)."""
        if self._sandbox is None:
            options: dict[str, Any] = {}
            if self.container_image and not self.container_image.startswith("python:"):
                options["image"] = self.container_image
            if self._backend in ("bwrap", "unsafe-subprocess"):
                options.pop("image", None)
            self._sandbox = get_sandbox(
                self._backend, max_concurrent=self._max_concurrent, limits=self._limits, **options
            )
        return self._sandbox

    def execute_code_safely(self, code: str, execution_context: str = "", timeout: float | None = None) -> dict[str, Any]:
        """Run code; returns success, output, error, execution_time plus exit_code, timed_out, killed_by,
        backend, truncation flags and peak_memory. Never raises for the code's own failures; a
        sandbox that cannot run at all is reported with success False and `sandbox_error`."""
        if execution_context:
            log.info("executing code: %s", execution_context[:200])  # context, as in the original: not code
        try:
            res = self.sandbox.run(code, timeout=timeout if timeout is not None else self.default_timeout)
        except SandboxError as exc:
            log.error("sandbox unavailable: %s", exc)
            return {
                "success": False, "output": "", "error": str(exc), "execution_time": 0.0,
                "exit_code": None, "timed_out": False, "killed_by": None, "backend": None,
                "sandbox_error": type(exc).__name__,
            }
        error = res.stderr
        if res.timed_out:
            error = (error + "\n" if error else "") + f"Execution timed out after {res.duration:.1f}s"
        elif res.killed_by == "memory":
            error = (error + "\n" if error else "") + f"Killed: memory limit {self.memory_limit} exceeded"
        elif res.killed_by == "cpu":
            error = (error + "\n" if error else "") + "Killed: CPU time limit exceeded"
        data = res.to_dict()
        data.update({"success": res.ok, "output": res.stdout, "error": error, "execution_time": res.duration})
        return data
