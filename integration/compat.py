"""The original KGoT error management API, every call answered by the recovery graph (no second implementation).

    system = create_kgot_error_management_system(chat_model, {"syntax_max_retries": 3})
    value, success = await system.handle_error(error, "JSON parsing operation")
    system.get_comprehensive_statistics()["kgot_error_management"]["recovery_rate"]

Where the original differs from this module, this module is right on purpose:
- success means a validator proved the fix. The original counted any text that does not
  look like JSON as valid syntax, and its API and generic handlers "recovered" by running a
  stub that always succeeded. Here an unprovable error returns `(None, False)`.
- `llm_client` is a langchain chat model (`BaseChatModel`), passed to the graph as its model;
  None runs without the LLM layers. The original's `acomplete()` clients are refused.
- the graph classifies the failure from the exception (the original matched substrings such as
  "json" in the message); `error_type` is recorded in the ErrorContext. An error carrying
  `problematic_content` is judged by that content, one carrying `code` as Python.
- `handle_error` can re-run the failed call (`operation=`, `arguments=`); the original could not.
- `PythonExecutorManager.execute_code_safely` never raises for failing code (it returns
  `success: False`), so the original's MCP pattern `try: execute... except: handle_error`
  never reached recovery; `validate_code` runs the code and hands a failure to the graph.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from kgot_errors.errors import ConfigError, SandboxError
from kgot_errors.graph.recover import DEFAULT
from kgot_errors.integration._run import Options, arun
from kgot_errors.integration._guard import Call
from kgot_errors.runtime.api_errors import APIErrorManager
from kgot_errors.runtime.operations import call_operation
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.sandbox import PythonExecutorManager as _SandboxExecutor
from kgot_errors.state import ErrorKind, Layer, RecoveryResult, Verdict
from kgot_errors.state.incident import qualified_name
from pydantic import ValidationError

__all__ = [
    "APIErrorManager",
    "ErrorContext",
    "ErrorRecoveryOrchestrator",
    "ErrorSeverity",
    "ErrorType",
    "IntegrationConfig",
    "KGoTAlitaErrorIntegrationOrchestrator",
    "KGoTErrorManagementSystem",
    "PythonExecutorManager",
    "SyntaxErrorManager",
    "create_kgot_alita_error_integration",
    "create_kgot_error_management_system",
]

log = logging.getLogger(__name__)


class ErrorType(Enum):
    SYNTAX_ERROR = "syntax_error"
    API_ERROR = "api_error"
    SYSTEM_ERROR = "system_error"
    VALIDATION_ERROR = "validation_error"
    EXECUTION_ERROR = "execution_error"
    TIMEOUT_ERROR = "timeout_error"
    SECURITY_ERROR = "security_error"


class ErrorSeverity(Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"  # recorded in the incident as low


_BY_KIND = {ErrorKind.SYNTAX: ErrorType.SYNTAX_ERROR, ErrorKind.SCHEMA: ErrorType.VALIDATION_ERROR,
            ErrorKind.TRANSIENT: ErrorType.API_ERROR, ErrorKind.PERMANENT: ErrorType.API_ERROR,
            ErrorKind.EXECUTION: ErrorType.EXECUTION_ERROR, ErrorKind.UNKNOWN: ErrorType.SYSTEM_ERROR}


@dataclasses.dataclass
class ErrorContext:
    """The original per-error record; here filled from the recovery thread (`error_id` is its thread id)."""

    error_id: str
    error_type: ErrorType
    severity: ErrorSeverity
    timestamp: datetime
    original_operation: str
    error_message: str
    stack_trace: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    recovery_attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "error_type": self.error_type.value, "severity": self.severity.value,
                "timestamp": self.timestamp.isoformat(), "original_operation": self.original_operation,
                "error_message": self.error_message, "retry_count": self.retry_count,
                "max_retries": self.max_retries, "metadata": self.metadata}


_FLAT_CONFIG = {
    "syntax_max_retries": ("syntax_error_management", "max_retries"),
    "api_max_retries": ("api_error_management", "max_retries"),
    "api_min_wait": ("api_error_management", "min_wait_seconds"),
    "api_max_wait": ("api_error_management", "max_wait_seconds"),
    "container_image": ("python_executor", "container_image"),
    "execution_timeout": ("python_executor", "default_timeout"),
    "memory_limit": ("python_executor", "memory_limit"),
    "cpu_limit": ("python_executor", "cpu_limit"),
    "voting_rounds": ("error_recovery", "voting_rounds"),
    "consensus_threshold": ("error_recovery", "consensus_threshold"),
    "max_refinement_iterations": ("error_recovery", "max_refinement_iterations"),
}
"""The original constructor's flat config keys, as settings paths. Nested groups (the file shape) work as well."""


def settings_from_config(config: Mapping[str, Any] | None) -> Settings:
    """Settings from the original `config` dict (flat keys or the settings file's groups), over the environment."""
    nested: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if key in _FLAT_CONFIG:
            group, name = _FLAT_CONFIG[key]
            if key == "container_image" and str(value).startswith("python:"):
                continue  # a registry image: the sandbox uses its locally built one (see PythonExecutorManager)
            nested.setdefault(group, {})[name] = float(value) if key == "cpu_limit" else value
        elif isinstance(value, Mapping) and key in Settings.model_fields:
            nested.setdefault(key, {}).update(value)
        else:
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(_FLAT_CONFIG))}, or a settings "
                              "group)", setting=key)
    return load_settings(**nested)


def _chat_model(llm_client: Any) -> Any:
    from langchain_core.language_models import BaseChatModel

    if llm_client is None or isinstance(llm_client, BaseChatModel):
        return llm_client
    raise TypeError(f"llm_client must be a langchain chat model (e.g. ChatOpenAI) or None, not "
                    f"{type(llm_client).__name__}; clients with an acomplete() method are not supported")


def _with(settings: Settings, group: str, **values: Any) -> Settings:
    """`settings` with some fields of one group replaced (validated)."""
    current = getattr(settings, group)
    try:
        return settings.model_copy(update={group: type(current).model_validate({**current.model_dump(), **values})})
    except ValidationError as exc:
        raise ConfigError(f"bad {group} value: {exc.errors()[0]['msg']}", setting=group) from None


def _options(owner: Any, **extra: Any) -> Options:
    return Options(settings=owner.settings, model=owner.llm_client, checkpointer=owner.checkpointer, **extra)


class ContentSyntaxError(Exception):
    """A syntax problem reported as text (`handle_syntax_error`): the content alone decides JSON or Python."""


class SyntaxErrorManager:
    """Repairs malformed LLM output: unicode_fix, parser_fix, then llm_fix with `llm_client` (`max_retries` tries)."""

    def __init__(self, llm_client: Any, max_retries: int = 3, *, settings: Settings | None = None,
                 checkpointer: Any = DEFAULT) -> None:
        self.llm_client = _chat_model(llm_client)
        self.max_retries = max_retries
        self.settings = _with(settings or load_settings(), "syntax_error_management", max_retries=max_retries)
        self.checkpointer = checkpointer
        self.results: list[RecoveryResult] = []

    async def handle_syntax_error(self, problematic_content: str, operation_context: str,
                                  error_details: str) -> tuple[str, bool]:
        """`(repaired text, True)` when a validator proved it, else `(problematic_content, False)`."""
        result = await arun(_options(self), ContentSyntaxError(error_details or "syntax error"),
                            content=problematic_content, context=operation_context)
        self.results.append(result)
        if result.recovered and result.text is not None:
            return result.text, True
        return problematic_content, False


def _exception_names(name: str) -> list[str]:
    """The MRO names of a builtin exception class named `name` (what classify reads), else just the name."""
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return [qualified_name(c) for c in found.__mro__ if issubclass(c, BaseException)]
    return [name]


def _failure_of(run: Mapping[str, Any]) -> tuple[str, list[str], str]:
    """Exception type, its MRO names and message from a failed run's stderr (`ZeroDivisionError: division by zero`)."""
    if run.get("timed_out") or run.get("killed_by"):
        name = "subprocess.TimeoutExpired"
        return name, [name], (run.get("error") or "").strip().rsplit("\n", 1)[-1] or name
    last = (run.get("error") or run.get("stderr") or "").strip().rsplit("\n", 1)[-1]
    head, _, message = last.partition(":")
    names = _exception_names(head.strip()) if head.strip().isidentifier() else []
    if len(names) > 1:
        return names[0], names, message.strip() or head
    return "subprocess.CalledProcessError", [], last or f"exit {run.get('exit_code')}"


class PythonExecutorManager(_SandboxExecutor):
    """The sandbox's executor with the original async API, and `validate_code` for generated tool (MCP) code.

    `execute_code_safely` is a coroutine, as in the original (the sandbox's own class runs it
    blocking); `validate_code` runs the code and, when it fails, hands it to the recovery graph
    (refine revises it with `model`, each revision proven by running it in this sandbox).
    """

    def __init__(self, container_image: str = "python:3.9-slim", default_timeout: float = 30,
                 memory_limit: str = "256m", cpu_limit: float = 0.5, *, model: Any = None,
                 settings: Settings | None = None, checkpointer: Any = DEFAULT, **options: Any) -> None:
        super().__init__(container_image, default_timeout, memory_limit, float(cpu_limit), **options)
        self.llm_client = _chat_model(model)
        self.settings = settings or load_settings()
        self.checkpointer = checkpointer

    async def execute_code_safely(self, code: str, execution_context: str = "",  # type: ignore[override]
                                  timeout: float | None = None) -> dict[str, Any]:
        """Run code in the sandbox: success, output, error, execution_time, exit_code, backend, ...

        `execution_context` describes the run (as in the original, which only logged it); it is
        not prepended to the code, which would make any prose context a SyntaxError.
        """
        log.debug("executing generated code: %s", execution_context)
        return await asyncio.to_thread(super().execute_code_safely, code, "", timeout)

    def _sandbox_or_none(self) -> Any:
        try:
            return self.sandbox
        except SandboxError as exc:
            log.warning("no sandbox for recovery: %s", exc)
            return None

    async def validate_code(self, code: str, *, execution_context: str = "", expected_output: str | None = None,
                            timeout: float | None = None) -> dict[str, Any]:
        """Run `code`; when it fails (or prints something else than `expected_output`), recover it through the graph.

        Returns `valid` (the returned `code` runs), `code` (the original or the proven fix),
        `recovered` (a fix was needed and proven), `execution` (the first run) and `result`
        (the RecoveryResult, or None when the code was fine).
        """
        first = await self.execute_code_safely(code, execution_context, timeout)
        matches = expected_output is None or first["output"].strip() == expected_output.strip()
        if first["success"] and matches:
            return {"valid": True, "code": code, "recovered": False, "execution": first, "result": None}
        if first.get("sandbox_error"):
            return {"valid": False, "code": code, "recovered": False, "execution": first, "result": None}
        error_type, mro, message = _failure_of(first) if not first["success"] else (
            "AssertionError", ["AssertionError"], "the output differs from the expected output")
        incident = {"error_type": error_type, "error_mro": mro, "message": message,
                    "traceback": first.get("error") or None, "content": code, "content_kind": "python",
                    "expected_output": expected_output}
        result = await arun(_options(self, sandbox=self._sandbox_or_none()), incident,
                            context=execution_context or "validating generated tool code")
        fixed = result.text if result.recovered and result.text else code
        return {"valid": result.recovered, "code": fixed, "recovered": result.recovered, "execution": first,
                "result": result}


class ErrorRecoveryOrchestrator:
    """Majority voting and iterative refinement with the recovery graph's rules (settings.error_recovery)."""

    def __init__(self, voting_rounds: int = 3, consensus_threshold: float = 0.6, max_refinement_iterations: int = 3,
                 *, model: Any = None, settings: Settings | None = None, checkpointer: Any = DEFAULT) -> None:
        self.llm_client = _chat_model(model)
        self.settings = _with(settings or load_settings(), "error_recovery", voting_rounds=voting_rounds,
                              consensus_threshold=consensus_threshold,
                              max_refinement_iterations=max_refinement_iterations)
        self.voting_rounds, self.consensus_threshold = voting_rounds, consensus_threshold
        self.max_refinement_iterations = max_refinement_iterations
        self.checkpointer = checkpointer
        self.recovery_history: list[dict[str, Any]] = []

    async def execute_with_majority_voting(self, operation: Callable[..., Any], operation_name: str, *args: Any,
                                           **kwargs: Any) -> tuple[Any, float]:
        """Call `operation` `voting_rounds` times; `(majority answer, its share)`, answers compared as the vote layer
        compares them (sorted-key JSON); failed calls abstain. A tie returns `(None, share)`. Raises when every call fails."""
        from kgot_errors.nodes.vote import canonical_json, tally

        answers: list[Any] = []
        ballots: list[dict[str, Any]] = []
        for index in range(self.voting_rounds):
            try:
                value = await call_operation(operation, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a failed round abstains, as in the original
                ballots.append({"index": index, "key": None, "valid": False, "reason": f"{type(exc).__name__}: {exc}"})
                continue
            answers.append(value)
            ballots.append({"index": index, "key": canonical_json(value), "valid": True, "reason": ""})
        count = tally(ballots)
        if not count.valid_votes:
            raise RuntimeError(f"all {self.voting_rounds} voting rounds of {operation_name} failed: "
                               + "; ".join(a["reason"] for a in count.abstained))
        winner = count.winner
        keys = [b["key"] for b in ballots if b["key"] is not None]
        return (answers[keys.index(winner)] if winner is not None else None), count.share

    async def iterative_error_refinement(self, failed_operation: Callable[..., Any], error_context: ErrorContext,
                                         refinement_strategy: Callable[..., Any] | None = None) -> tuple[Any, bool]:
        """Revise the failed call's arguments (`error_context.metadata["arguments"]`) with the model until a call
        returns: the refine layer, each revision proven by calling `failed_operation` again."""
        if refinement_strategy is not None:
            raise TypeError("revisions come from the refine layer (the model, driven by the validator's feedback); "
                            "a custom refinement_strategy is not supported: pass model= instead")
        arguments = dict(error_context.metadata.get("arguments") or {})
        call = Call(failed_operation, (), arguments)
        name = getattr(failed_operation, "__name__", None) or "operation"
        error_type = str(error_context.metadata.get("exception_type") or "Exception")
        incident = {"error_type": error_type, "error_mro": _exception_names(error_type),
                    "message": error_context.error_message, "traceback": error_context.stack_trace,
                    "operation": name, "arguments": arguments}
        result = await arun(_options(self, operations={name: call.operation()}), incident,
                            context=error_context.original_operation)
        error_context.retry_count = len(result.attempts)
        error_context.recovery_attempts.extend(_attempt_rows(result))
        if not result.recovered:
            return None, False
        self.recovery_history.append({"recovery_id": result.thread_id, "error_context": error_context.to_dict(),
                                      "recovered_by": str(result.recovered_by),
                                      "timestamp": datetime.now(UTC).isoformat()})
        return (call.returned if call.called else result.value), True


def _attempt_rows(result: RecoveryResult) -> list[dict[str, Any]]:
    return [{"layer": str(a.layer), "try": a.try_no, "verdict": str(a.verdict), "reason": a.reason}
            for a in result.attempts]


_PERCENT = 100.0


def _statistics(results: list[RecoveryResult]) -> dict[str, Any]:
    """The original statistics keys, derived from the attempt records of the results this object handled.

    SEAM: once kgot_errors.observability lands, this becomes
        tally = Tally(); [tally.add_result(r) for r in results]
        return comprehensive(tally.statistics(breakers=default_store().snapshot()))
    (observability.statistics.Tally / comprehensive), or, for every thread in the store,
    observability's get_comprehensive_statistics(checkpointer=..., settings=...).
    """
    def count(kinds: tuple[ErrorKind, ...], recovered: bool = False) -> int:
        return sum(1 for r in results if r.kind in kinds and (r.recovered or not recovered))

    attempts = [a for r in results for a in r.attempts]
    runs = [a for a in attempts if a.validator == "sandbox" or a.layer == Layer.SANDBOX]
    handled = len(results)
    recovered = sum(r.recovered for r in results)
    by_layer: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for r in results:
        by_kind[str(r.kind)] = by_kind.get(str(r.kind), 0) + 1
        if r.recovered_by is not None:
            by_layer[str(r.recovered_by)] = by_layer.get(str(r.recovered_by), 0) + 1
    return {
        "kgot_error_management": {
            "total_errors_handled": handled,
            "successful_recoveries": recovered,
            "failed_recoveries": handled - recovered,
            "recovery_rate": round(recovered / handled * _PERCENT, 2) if handled else 0.0,
            "errors_by_kind": by_kind,
            "recoveries_by_layer": by_layer,
        },
        "syntax_error_manager": {
            "total_syntax_errors": count((ErrorKind.SYNTAX, ErrorKind.SCHEMA)),
            "successful_corrections": count((ErrorKind.SYNTAX, ErrorKind.SCHEMA), recovered=True),
            "llm_corrections": by_layer.get(str(Layer.LLM_FIX), 0),
        },
        "api_error_manager": {
            "total_api_errors": count((ErrorKind.TRANSIENT, ErrorKind.PERMANENT)),
            "successful_retries": count((ErrorKind.TRANSIENT, ErrorKind.PERMANENT), recovered=True),
            "retry_attempts": sum(1 for a in attempts if a.layer == Layer.BACKOFF and a.verdict != Verdict.SKIPPED),
        },
        "python_executor_manager": {
            "total_executions": len(runs),
            "successful_executions": sum(1 for a in runs if a.verdict == Verdict.RECOVERED),
            "execution_errors": count((ErrorKind.EXECUTION,)),
        },
        "llm": {"calls": sum(r.llm_calls for r in results), "tokens": sum(r.tokens for r in results)},
        "integration_health_score": round(recovered / handled, 4) if handled else 1.0,
        "timestamp": datetime.now(UTC).isoformat(),
    }


class KGoTErrorManagementSystem:
    """The original entry point: `handle_error(...) -> (value, success)`, statistics, cleanup; one graph underneath."""

    def __init__(self, llm_client: Any, config: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
                 checkpointer: Any = DEFAULT, sandbox: Any = None) -> None:
        self.llm_client = _chat_model(llm_client)
        self.config = dict(config or {})
        self.settings = settings or settings_from_config(self.config)
        self.checkpointer = checkpointer
        s = self.settings
        self.syntax_manager = SyntaxErrorManager(llm_client, s.syntax_error_management.max_retries, settings=s,
                                                 checkpointer=checkpointer)
        self.api_manager = APIErrorManager(settings=s.api_error_management)
        executor = s.python_executor
        self.executor_manager = PythonExecutorManager(
            self.config.get("container_image", "python:3.9-slim"), executor.default_timeout, executor.memory_limit,
            executor.cpu_limit, model=llm_client, settings=s, checkpointer=checkpointer, sandbox=sandbox,
            backend=executor.backend, max_concurrent=executor.max_concurrent_containers)
        recovery = s.error_recovery
        self.recovery_orchestrator = ErrorRecoveryOrchestrator(
            recovery.voting_rounds, recovery.consensus_threshold, recovery.max_refinement_iterations,
            model=llm_client, settings=s, checkpointer=checkpointer)
        self.results: list[RecoveryResult] = []
        self.error_contexts: list[ErrorContext] = []

    @property
    def last_result(self) -> RecoveryResult | None:
        """The whole RecoveryResult of the latest handle_error (attempts, summary, thread id)."""
        return self.results[-1] if self.results else None

    async def handle_error(self, error: BaseException, operation_context: str, error_type: ErrorType | None = None,
                           severity: ErrorSeverity = ErrorSeverity.MEDIUM, *,
                           operation: Callable[..., Any] | None = None,
                           arguments: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
        """Recover `error`: `(recovered value, True)`, or `(None, False)` when no validator proved a fix.

        The failing content is what the exception carries (`problematic_content`, `code`,
        JSONDecodeError's document, an output parser's llm_output). With `operation` (and its
        JSON `arguments`) backoff and refine can call it again; the value is then its return value.
        """
        fields: dict[str, Any] = {"severity": "low" if severity is ErrorSeverity.INFO else severity.value}
        failure: BaseException = error
        content = getattr(error, "problematic_content", None)
        if isinstance(content, str):
            # The original's syntax path: the content, not the exception's type, says JSON or Python (its
            # examples raise Python's SyntaxError for invalid JSON).
            failure = ContentSyntaxError(f"{type(error).__name__}: {error}")
            fields["content"] = content
        elif isinstance(getattr(error, "code", None), str):
            fields.update(content=error.code, content_kind="python")  # type: ignore[attr-defined]
        operations: dict[str, Callable[..., Any]] = {}
        call = None
        if operation is not None:
            call = Call(operation, (), dict(arguments or {}))
            name = getattr(operation, "__name__", None) or "operation"
            operations[name] = call.operation()
            fields.update(operation=name, arguments=dict(arguments or {}))
        sandbox = self.executor_manager._sandbox_or_none() if fields.get("content_kind") == "python" else None
        result = await arun(_options(self, sandbox=sandbox), failure, operations=operations,
                            context=operation_context, **fields)
        self._record(error, result, operation_context, error_type, severity)
        if not result.recovered:
            return None, False
        if call is not None and call.called and result.recovered_by in (Layer.BACKOFF, Layer.REFINE):
            return call.returned, True
        return result.value, True

    def _record(self, error: BaseException, result: RecoveryResult, operation: str, error_type: ErrorType | None,
                severity: ErrorSeverity) -> None:
        self.results.append(result)
        self.error_contexts.append(ErrorContext(
            error_id=result.thread_id or uuid.uuid4().hex, error_type=error_type or _BY_KIND[result.kind],
            severity=severity, timestamp=datetime.now(UTC), original_operation=operation, error_message=str(error),
            stack_trace=None, retry_count=len(result.attempts),
            max_retries=self.settings.syntax_error_management.max_retries,
            recovery_attempts=_attempt_rows(result),
            metadata={"kind": str(result.kind), "outcome": result.outcome, "summary": result.summary,
                      "exception_type": type(error).__name__}))

    def get_comprehensive_statistics(self) -> dict[str, Any]:
        """The original keys (`kgot_error_management.total_errors_handled`, `recovery_rate` in percent, ...,
        `integration_health_score`), from the results this system handled."""
        stats = _statistics(self.results)
        stats["api_error_stats"] = self.api_manager.get_error_statistics()
        return stats

    def cleanup(self) -> None:
        """Remove leftovers of crashed sandbox runs."""
        if self.executor_manager._sandbox is not None:
            self.executor_manager._sandbox.cleanup()


def create_kgot_error_management_system(llm_client: Any, config: Mapping[str, Any] | None = None,
                                        **options: Any) -> KGoTErrorManagementSystem:
    return KGoTErrorManagementSystem(llm_client, config, **options)


@dataclasses.dataclass
class IntegrationConfig:
    """The original integration switches. `enable_alita_refinement=False` turns the refine layer off
    (max_refinement_iterations 0); the others are accepted for compatibility and change nothing."""

    enable_alita_refinement: bool = True
    enable_cross_system_recovery: bool = True
    enable_unified_logging: bool = True
    enable_mcp_error_validation: bool = True
    max_cross_system_retries: int = 2
    error_escalation_threshold: int = 3


class KGoTAlitaErrorIntegrationOrchestrator:
    """The original integration orchestrator: tool and system errors through one KGoTErrorManagementSystem."""

    def __init__(self, llm_client: Any, config: IntegrationConfig | None = None, *, settings: Settings | None = None,
                 checkpointer: Any = DEFAULT, sandbox: Any = None) -> None:
        self.config = config or IntegrationConfig()
        self.llm_client = llm_client
        base = settings or load_settings()
        if not self.config.enable_alita_refinement:
            base = _with(base, "error_recovery", max_refinement_iterations=0)
        self.error_management_system = KGoTErrorManagementSystem(llm_client, settings=base,
                                                                 checkpointer=checkpointer, sandbox=sandbox)
        self.tool_errors: dict[str, int] = {}

    async def handle_integrated_error(self, error: BaseException, context: Mapping[str, Any],
                                      error_source: str = "unknown") -> dict[str, Any]:
        """`{"success", "result", "recovery_method", "error_id", "summary", ...}` for one error.

        `error_source="tool"`: `context` names `tool_name`, its JSON `tool_input`, and may hold
        the tool itself as `tool` (a callable taking the input as keywords) so it can be re-run.
        """
        system = self.error_management_system
        if error_source == "tool":
            name = str(context.get("tool_name", "unknown"))
            self.tool_errors[name] = self.tool_errors.get(name, 0) + 1
            tool = context.get("tool")
            value, success = await system.handle_error(
                error, f"Tool execution: {name}", severity=ErrorSeverity.HIGH,
                operation=tool if callable(tool) else None, arguments=context.get("tool_input"))
        else:
            value, success = await system.handle_error(error, str(context.get("operation_context",
                                                                              "Unknown operation")))
        result = system.last_result
        assert result is not None
        out = {"success": success, "result": value,
               "recovery_method": str(result.recovered_by) if success else "not_recovered",
               "error_id": result.thread_id, "summary": result.summary, "error_source": error_source}
        if error_source == "tool":
            out["tool_name"] = context.get("tool_name", "unknown")
        return out

    def get_integration_health_report(self) -> dict[str, Any]:
        """The original report's keys: report_metadata, unified_metrics (integration_health_score, ...),
        system_breakdown, recommendations."""
        stats = self.error_management_system.get_comprehensive_statistics()
        core = stats["kgot_error_management"]
        recommendations = []
        if core["total_errors_handled"] and core["recovery_rate"] < 80:
            recommendations.append("recovery rate below 80%: read the summaries of the failed recoveries "
                                   "(kgot-errors history THREAD) before tuning budgets")
        if stats["kgot_error_management"]["failed_recoveries"] and self.llm_client is None:
            recommendations.append("no chat model configured: llm_fix, refine and vote were skipped")
        return {
            "report_metadata": {"generated_at": datetime.now(UTC).isoformat(), "report_version": "kgot-errors",
                                "systems_included": ["kgot-errors recovery graph"]},
            "unified_metrics": {
                "total_errors_across_systems": core["total_errors_handled"],
                "total_recoveries_across_systems": core["successful_recoveries"],
                "overall_recovery_rate_percent": core["recovery_rate"],
                "integration_health_score": stats["integration_health_score"],
            },
            "system_breakdown": {"kgot_error_management": stats, "tool_errors": dict(self.tool_errors)},
            "recommendations": recommendations,
        }

    def cleanup_integration(self) -> None:
        self.error_management_system.cleanup()


def create_kgot_alita_error_integration(llm_client: Any, config: IntegrationConfig | None = None,
                                        **options: Any) -> KGoTAlitaErrorIntegrationOrchestrator:
    return KGoTAlitaErrorIntegrationOrchestrator(llm_client, config, **options)
