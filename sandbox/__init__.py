"""Isolated execution of generated Python code: bubblewrap or Docker behind one protocol, failing closed."""

from kgot_errors.sandbox._compat import PythonExecutorManager
from kgot_errors.sandbox._image import build_image
from kgot_errors.sandbox._limits import Limits, parse_size
from kgot_errors.sandbox._protocol import Backend
from kgot_errors.sandbox._result import ExecResult
from kgot_errors.sandbox._sandbox import Sandbox, get_sandbox

__all__ = [
    "Backend",
    "ExecResult",
    "Limits",
    "PythonExecutorManager",
    "Sandbox",
    "build_image",
    "get_sandbox",
    "parse_size",
]
