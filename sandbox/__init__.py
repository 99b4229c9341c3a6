"""Isolated execution of generated Python code: bubblewrap or Docker behind one protocol, failing closed.

Names load lazily: importing this package (or its `_cli`, to register the `run` command) loads no backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgot_errors import _lazy_exports

_EXPORTS: dict[str, str] = {
    "Backend": "kgot_errors.sandbox._protocol",
    "ExecResult": "kgot_errors.sandbox._result",
    "Limits": "kgot_errors.sandbox._limits",
    "PythonExecutorManager": "kgot_errors.sandbox._compat",
    "Sandbox": "kgot_errors.sandbox._sandbox",
    "build_image": "kgot_errors.sandbox._image",
    "get_sandbox": "kgot_errors.sandbox._sandbox",
    "parse_size": "kgot_errors.sandbox._limits",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from kgot_errors.sandbox._compat import PythonExecutorManager
    from kgot_errors.sandbox._image import build_image
    from kgot_errors.sandbox._limits import Limits, parse_size
    from kgot_errors.sandbox._protocol import Backend
    from kgot_errors.sandbox._result import ExecResult
    from kgot_errors.sandbox._sandbox import Sandbox, get_sandbox


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
