"""Runtime: settings, the runtime context nodes read, and checkpoint stores."""

from kgot_errors.runtime.context import RecoveryContext, context_of
from kgot_errors.runtime.settings import Settings, load_settings

__all__ = ["RecoveryContext", "Settings", "context_of", "load_settings"]
