"""The exceptions kgot-errors raises, one tree, each carrying structured fields.

    KgotError
    ├── ConfigError            bad settings: unknown key, bad value, bad profile      (ValueError)
    ├── InvalidIncident        an incident that cannot be recovered as given          (ValueError)
    │   └── InvalidSchema      the output schema is not a JSON Schema / pydantic model
    │       └── SchemaTimeout  a schema pattern could not be evaluated within its deadline
    ├── UnknownOperation       an incident names an operation nobody registered       (LookupError)
    ├── ThreadNotFound         no checkpointed thread with that id                    (LookupError)
    ├── ThreadNotPaused        a fix was supplied for a thread not waiting for one
    ├── CheckpointError        the checkpoint store cannot be opened or written
    │   └── StoreNotFound      a store to read does not exist (nothing was recorded there)
    ├── SandboxError           the sandbox could not run code at all
    │   └── SandboxUnavailable no isolating backend here (the sandbox fails closed)
    └── RecoveryFailed         raised by guards when recovery did not prove a fix;
                               `.result` holds the RecoveryResult

A failure to *recover* is not an exception: `recover()` returns a RecoveryResult with
`recovered=False` and says why. Exceptions are for callers' mistakes and broken
infrastructure. Parse-like errors subclass ValueError so LangGraph's default RetryPolicy
never retries them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kgot_errors.state import RecoveryResult

__all__ = [
    "CheckpointError",
    "ConfigError",
    "InvalidIncident",
    "InvalidSchema",
    "KgotError",
    "RecoveryFailed",
    "SandboxError",
    "SandboxUnavailable",
    "SchemaTimeout",
    "StoreNotFound",
    "ThreadNotFound",
    "ThreadNotPaused",
    "UnknownOperation",
]


class KgotError(Exception):
    """Base class of every error kgot-errors raises on purpose."""


class ConfigError(KgotError, ValueError):
    """Settings could not be loaded: `setting` names the offending key or source."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class InvalidIncident(KgotError, ValueError):
    """The incident itself is malformed (not the content it carries)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidSchema(InvalidIncident):
    """The output schema is not a usable JSON Schema (dict or boolean) or pydantic model class."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="output_schema")


class SchemaTimeout(InvalidSchema):
    """A schema took longer than its deadline on some value: `pattern` is the offending pattern, None when the
    schema's combinators and references (anyOf, $ref, ...) took the time on their own."""

    def __init__(self, message: str, *, pattern: str | None = None) -> None:
        super().__init__(message)
        self.pattern = pattern


class UnknownOperation(KgotError, LookupError):
    """An incident names an operation that is not in the runtime's registry."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        known_txt = ", ".join(sorted(known or [])) or "none registered"
        super().__init__(f"unknown operation {name!r} (known: {known_txt})")
        self.name = name
        self.known = sorted(known or [])


class ThreadNotFound(KgotError, LookupError):
    """No checkpoint exists for this thread id in the given store."""

    def __init__(self, thread_id: str, store: str | None = None) -> None:
        where = f" in {store}" if store else ""
        super().__init__(f"no recovery thread {thread_id!r}{where}")
        self.thread_id = thread_id
        self.store = store


class ThreadNotPaused(KgotError):
    """`resume(..., value=...)` on a thread that is not paused for a person's fix."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id!r} is not waiting for a fix (see `kgot-errors pending`)")
        self.thread_id = thread_id


class CheckpointError(KgotError):
    """The checkpoint store cannot be opened, set up or written."""

    def __init__(self, message: str, *, setting: str | None = None, target: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.target = target


class StoreNotFound(CheckpointError):
    """A store to read (list, stats, history, prune) does not exist: nothing was ever recorded there."""

    def __init__(self, target: str, *, setting: str | None = None) -> None:
        super().__init__(f"no checkpoint store at {target}: it does not exist (nothing was recorded there); check "
                         "--checkpoint / KGOT_CHECKPOINT_URL / KGOT_DATA_DIR", setting=setting, target=target)


class SandboxError(KgotError):
    """The sandbox failed to run code (not: the code failed)."""


class SandboxUnavailable(SandboxError):
    """No isolating sandbox backend can run here; code is refused, never run unisolated."""


class RecoveryFailed(KgotError):
    """Raised by guards when recovery did not prove a fix; carries the full result."""

    def __init__(self, result: RecoveryResult, original: BaseException | None = None) -> None:
        summary = result.summary
        super().__init__(summary if summary.startswith("not recovered") else f"not recovered: {summary}")
        self.result = result
        self.original = original

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes
        return (type(self), (self.result, None))
