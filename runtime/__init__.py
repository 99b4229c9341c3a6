"""Runtime: settings, the runtime context nodes read, and checkpoint stores. Public names load on first use (the
settings alone do not import asyncio and the context)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kgot_errors import _lazy_exports

_EXPORTS: dict[str, str] = {
    "RecoveryContext": "kgot_errors.runtime.context",
    "context_of": "kgot_errors.runtime.context",
    "Settings": "kgot_errors.runtime.settings",
    "load_settings": "kgot_errors.runtime.settings",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from kgot_errors.runtime.context import RecoveryContext, context_of
    from kgot_errors.runtime.settings import Settings, load_settings

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
