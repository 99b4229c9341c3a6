"""JSON-lines log files, set up only by an explicit call: errors to error_management.log, everything to combined.log.

    from kgot_errors.observability import configure_logging
    configure_logging(log_dir="logs/kgot", level="INFO")

The library itself only calls `logging.getLogger(__name__)`; nothing is configured at import.
Each line is one JSON object: `timestamp`, `level`, `logger`, `message`, `service`, and the
record's structured fields (`event`, `thread_id`, `alert_type`, ...). Secrets never reach a
file: fields named like keys, passwords or tokens of credentials are replaced by "***",
credentials inside URLs are cut, and prompt-sized fields (`prompt`, `content`, `messages`,
`candidate`) are written as their length unless the handler runs at DEBUG (then cut to 2,000
characters).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["COMBINED_LOG", "ERROR_LOG", "SERVICE", "LogSetup", "configure_logging", "default_log_dir"]

ERROR_LOG = "error_management.log"
COMBINED_LOG = "combined.log"
SERVICE = "kgot-error-management"
_ROOT = "kgot_errors"
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authorization|cookie|credential|access[_-]?token)",
                         re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|sk-[a-z0-9-]{0,8})[a-z0-9._\-]{8,}")
_BULKY = frozenset({"prompt", "content", "messages", "candidate", "output", "stdout", "stderr"})
_DEBUG_CHARS = 2_000


def default_log_dir(settings: Any = None) -> Path:
    """`<data dir>/logs`: next to the default checkpoint store."""
    if settings is None:
        from kgot_errors.runtime.settings import load_settings

        settings = load_settings()
    return settings.resolved_data_dir() / "logs"


def _scrub_text(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _BEARER.sub("***", text)


def _scrub(value: Any, *, verbose: bool, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key):
        return "***" if value not in (None, "") else value
    if isinstance(value, str):
        if key in _BULKY:
            return _scrub_text(value[:_DEBUG_CHARS]) if verbose else f"<{len(value)} chars>"
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {k: _scrub(v, verbose=verbose, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if key in _BULKY and not verbose:
            return f"<{len(value)} items>"
        return [_scrub(v, verbose=verbose) for v in value]
    return value


def _formatter(*, verbose: bool) -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class ScrubbingFormatter(JsonFormatter):
        """JSON lines with secrets and bulky text redacted (each handler its own copy: others see the record)."""

        def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
            return {k: _scrub(v, verbose=verbose, key=k) for k, v in log_data.items()}

    return ScrubbingFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        static_fields={"service": SERVICE},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
        json_default=str,
    )


class LogSetup:
    """The handlers `configure_logging` installed; `close()` removes them again."""

    def __init__(self, log_dir: Path, handlers: list[logging.Handler], logger: logging.Logger,
                 previous_level: int) -> None:
        self.log_dir = log_dir
        self.handlers = handlers
        self.logger = logger
        self.previous_level = previous_level

    @property
    def error_log(self) -> Path:
        return self.log_dir / ERROR_LOG

    @property
    def combined_log(self) -> Path:
        return self.log_dir / COMBINED_LOG

    def close(self) -> None:
        if not self.handlers:
            return
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.handlers = []
        self.logger.setLevel(self.previous_level)


_current: LogSetup | None = None


def configure_logging(log_dir: str | os.PathLike[str] | None = None, *, level: int | str = "INFO",
                      settings: Any = None, logger: str = _ROOT) -> LogSetup:
    """Write the `kgot_errors` loggers (or `logger`'s tree) as JSON lines under `log_dir`.

    `log_dir` defaults to `default_log_dir(settings)`; it is created. Records at ERROR and
    above go to `error_management.log`; records at `level` and above to `combined.log`.
    Calling it again replaces the earlier setup (never duplicates lines). Raises OSError
    when the directory cannot be created or written.
    """
    global _current
    directory = Path(log_dir) if log_dir is not None else default_log_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    threshold = logging._checkLevel(level.upper() if isinstance(level, str) else level)  # noqa: SLF001
    target = logging.getLogger(logger)
    if _current is not None:
        _current.close()
    previous = target.level
    handlers: list[logging.Handler] = []
    for name, handler_level in ((ERROR_LOG, logging.ERROR), (COMBINED_LOG, threshold)):
        handler = logging.FileHandler(directory / name, encoding="utf-8", delay=False)
        handler.setLevel(handler_level)
        handler.setFormatter(_formatter(verbose=handler_level <= logging.DEBUG))
        target.addHandler(handler)
        handlers.append(handler)
    if target.level == logging.NOTSET or target.level > threshold:
        target.setLevel(threshold)
    _current = LogSetup(directory, handlers, target, previous)
    return _current
