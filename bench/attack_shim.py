"""Adapter for the sandbox attack harness: `run(code, timeout, stdin=None) -> dict`.

    KGOT_SANDBOX_BACKEND=bwrap|docker|auto python3 run_attacks.py bench/attack_shim.py:run
"""

from __future__ import annotations

import os
from typing import Any

from kgot_errors.sandbox import Sandbox, get_sandbox

_sandbox: Sandbox | None = None


def backend_from_env() -> str:
    """The backend the harness asked for (default bwrap)."""
    return os.environ.get("KGOT_SANDBOX_BACKEND", "bwrap")


def run(code: str, timeout: float, stdin: str | None = None) -> dict[str, Any]:
    global _sandbox
    if _sandbox is None:
        _sandbox = get_sandbox(backend_from_env())  # type: ignore[arg-type]
    return _sandbox.run(code, timeout=timeout, stdin=stdin).to_dict()
