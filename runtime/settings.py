"""Settings: one pydantic model with the original system's defaults, loaded from profile, file and env.

Precedence, lowest first: the profile's defaults, a JSON/TOML file in the original shape
(`syntax_error_management`, `api_error_management`, `python_executor`, `error_recovery`,
`monitoring`), `KGOT_*` environment variables, explicit overrides. Unknown keys and bad
values raise ConfigError naming the setting and where it came from.

Environment variables: `KGOT_<GROUP>__<FIELD>` for any field (e.g.
`KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES=10`), plus the short names in `ENV_ALIASES`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kgot_errors.errors import ConfigError

__all__ = [
    "ApiSettings",
    "CheckpointSettings",
    "ENV_ALIASES",
    "ExecutorSettings",
    "LlmSettings",
    "PROFILES",
    "RecoverySettings",
    "Settings",
    "SyntaxSettings",
    "load_settings",
    "parse_memory",
]

ENV_PREFIX = "KGOT_"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class SyntaxSettings(_Group):
    """Syntax/parse repair (unicode_fix, parser_fix, llm_fix)."""

    max_retries: int = Field(3, ge=0, le=20, description="llm_fix tries")
    unicode_encoders: tuple[str, ...] = ("unicode_escape", "utf-8", "ascii", "latin-1")
    llm_correction_enabled: bool = True
    langchain_json_parser_enabled: bool = True
    cache_corrections: bool = True
    correction_cache_ttl: int = Field(3600, ge=0, description="seconds a cached llm_fix correction lives")
    max_content_chars: int = Field(8_000_000, ge=1, description="larger content is refused, not parsed")
    max_depth: int = Field(512, ge=1, le=10_000, description="deeper nesting is refused, not parsed")
    changes: dict[Literal["coerced", "added", "removed", "truncated", "restructured"],
                  Literal["accept", "degrade", "refuse"]] = Field(
        default_factory=lambda: {"coerced": "accept", "truncated": "degrade", "restructured": "degrade",
                                 "added": "refuse", "removed": "refuse"},
        description="what a repair may do to the data: `accept` (recovered), `degrade` (outcome degraded, the "
                    "changes listed) or `refuse` (no fix), per kind of change; kinds not given keep their default")


class ApiSettings(_Group):
    """Retrying failed operations (backoff)."""

    max_retries: int = Field(6, ge=1, le=100, description="attempts, the first included")
    min_wait_seconds: float = Field(1.0, ge=0)
    max_wait_seconds: float = Field(60.0, ge=0)
    exponential_backoff_enabled: bool = True
    max_retry_after_seconds: float = Field(120.0, ge=0, description="cap on a server's Retry-After")
    circuit_breaker_enabled: bool = True
    circuit_breaker_threshold: int = Field(5, ge=1)
    circuit_breaker_reset_seconds: float = Field(30.0, ge=0)
    operation_timeout_seconds: float = Field(60.0, gt=0, description="one call of a registered operation; a call "
                                             "still running then is a failed (transient) attempt")
    on_outcome_unknown: Literal["rerun", "stop"] = Field(
        "rerun", description="a call recorded in flight by a process that stopped: run it again with the same "
        "idempotency key (rerun), or end the retries there (stop); either way the attempt says so")

    @model_validator(mode="after")
    def _waits_ordered(self) -> ApiSettings:
        if self.min_wait_seconds > self.max_wait_seconds:
            raise ValueError("min_wait_seconds must not exceed max_wait_seconds")
        return self


def parse_memory(value: str | int) -> int:
    """Bytes from a Docker-style size: 256m, 1g, 512k, or a plain number of bytes."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ValueError(f"not a memory size: {value!r} (use e.g. 256m or 1g)") from None


class ExecutorSettings(_Group):
    """The code sandbox (the original `python_executor`)."""

    backend: Literal["auto", "bwrap", "docker", "unsafe-subprocess"] = "auto"
    container_image: str = "kgot-errors-python:latest"
    default_timeout: float = Field(30.0, gt=0)
    memory_limit: str = "256m"
    cpu_limit: float = Field(0.5, gt=0)
    network_disabled: bool = True
    read_only: bool = True
    max_concurrent_containers: int = Field(5, ge=1)
    container_cleanup_interval: int = Field(300, ge=0)

    @field_validator("memory_limit")
    @classmethod
    def _memory_ok(cls, value: str) -> str:
        if parse_memory(value) < 16 << 20:
            raise ValueError("memory_limit below 16m cannot start Python")
        return value

    @field_validator("network_disabled", "read_only")
    @classmethod
    def _isolation_only(cls, value: bool) -> bool:
        if not value:
            raise ValueError("the sandbox always runs without network and on a read-only root")
        return value


class RecoverySettings(_Group):
    """refine, vote and what happens when nothing works (the original `error_recovery`)."""

    voting_rounds: int = Field(3, ge=1, le=25)
    consensus_threshold: float = Field(0.6, gt=0, le=1)
    vote_temperature: float = Field(0.7, gt=0, le=2)
    max_refinement_iterations: int = Field(3, ge=0, le=20)
    escalate_to_human: bool = False


class LlmSettings(_Group):
    """The chat model for llm_fix, refine and vote. No model: those layers record `skipped`."""

    model: str | None = Field(None, description="provider:model for init_chat_model, e.g. openai:gpt-4o-mini")
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout_seconds: float = Field(60.0, gt=0, description="one model call in all (connect, every read, "
                                   "the whole answer), and each read of the client's own")
    incident_timeout_seconds: float = Field(300.0, gt=0, description="per incident, all model calls together")
    max_llm_calls: int = Field(12, ge=0, description="per incident, all layers together")
    max_tokens: int = Field(50_000, ge=0, description="per incident, all layers together")
    max_prompt_chars: int = Field(24_000, ge=1000, description="failing output is cut to this")
    temperature: float = Field(0.0, ge=0, le=2, description="llm_fix and refine; vote samples at vote_temperature")
    client_max_retries: int = Field(0, ge=0, le=5, description="the client's own retries; 0 keeps every retry "
                                    "in the graph's RetryPolicy, counted in the attempt records")


class CheckpointSettings(_Group):
    """Deadlines and the circuit breaker of the checkpoint store (PostgreSQL; SQLite waits only for its lock)."""

    connect_timeout_seconds: float = Field(5.0, gt=0, description="opening one PostgreSQL connection")
    statement_timeout_seconds: float = Field(10.0, gt=0, description="one statement (server side) and one "
                                             "store call in all (client side, also when the server is frozen)")
    pool_timeout_seconds: float = Field(5.0, gt=0, description="waiting for a free pooled connection")
    breaker_threshold: int = Field(3, ge=1, description="consecutive failed store calls that open the breaker: "
                                   "while open, store calls fail at once")
    breaker_reset_seconds: float = Field(10.0, ge=0, description="an open breaker lets one probe call through "
                                         "after this (longer than a pool wait, so calls that were already waiting "
                                         "when it opened fail at once)")


class MonitoringSettings(_Group):
    """Accepted for compatibility with the original configuration shape."""

    health_check_interval: int = 60
    metrics_collection_enabled: bool = True
    prometheus_metrics_enabled: bool = True
    alerting_enabled: bool = True


class Settings(_Group):
    """All settings. Construct with `load_settings()`; `Settings()` is the default profile."""

    profile: Literal["default", "production"] = "default"
    syntax_error_management: SyntaxSettings = SyntaxSettings()
    api_error_management: ApiSettings = ApiSettings()
    python_executor: ExecutorSettings = ExecutorSettings()
    error_recovery: RecoverySettings = RecoverySettings()
    llm: LlmSettings = LlmSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    data_dir: Path | None = Field(None, description="where the default SQLite checkpoint file lives")
    checkpoint_url: str | None = Field(None, description="a SQLite path or postgresql:// URL")

    def resolved_data_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        env = os.environ if environ is None else environ
        base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "kgot-errors"

    def checkpoint_target(self) -> str:
        """The checkpoint store to use: the URL/path setting or `<data_dir>/recoveries.sqlite`."""
        return self.checkpoint_url or str(self.resolved_data_dir() / "recoveries.sqlite")


PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "production": {
        "syntax_error_management": {"max_retries": 5, "correction_cache_ttl": 7200},
        "api_error_management": {
            "max_retries": 10,
            "min_wait_seconds": 2,
            "max_wait_seconds": 120,
            "circuit_breaker_threshold": 10,
        },
        "python_executor": {
            "default_timeout": 60,
            "memory_limit": "1g",
            "cpu_limit": 2.0,
            "max_concurrent_containers": 5,
        },
    },
}

ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "KGOT_PROFILE": ("profile",),
    "KGOT_MODEL": ("llm", "model"),
    "KGOT_DATA_DIR": ("data_dir",),
    "KGOT_CHECKPOINT_URL": ("checkpoint_url",),
    "KGOT_SANDBOX_BACKEND": ("python_executor", "backend"),
    "KGOT_ESCALATE_TO_HUMAN": ("error_recovery", "escalate_to_human"),
    "OPENAI_API_KEY": ("llm", "api_key"),
    "OPENAI_BASE_URL": ("llm", "base_url"),
}
"""Short environment names. OPENROUTER_API_KEY is handled by the model factory."""

_GROUPS = {name for name, f in Settings.model_fields.items() if isinstance(f.default, BaseModel)}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}", setting=str(path)) from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"settings file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}",
                          setting=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold an object at the top", setting=str(path))
    return data


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if name in ENV_ALIASES:
            path = ENV_ALIASES[name]
            value: Any = raw if name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "KGOT_MODEL") else _env_value(raw)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
            if path[0] not in _GROUPS:
                continue  # someone else's KGOT_ variable; groups are ours
            value = _env_value(raw)
        else:
            continue
        if raw == "":
            continue
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        origin[path] = f"environment variable {name}"
    return data, origin


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from a profile, an optional JSON/TOML file, the environment and overrides.

    Pass `environ={}` to ignore the process environment (tests, embedded use).
    """
    env_data, origin = _from_env(os.environ if environ is None else environ)
    file_data = _read_file(Path(path)) if path is not None else {}
    chosen = profile or overrides.get("profile") or env_data.get("profile") or file_data.get("profile") or "default"
    if chosen not in PROFILES:
        raise ConfigError(f"unknown profile {chosen!r} (choose from: {', '.join(PROFILES)})", setting="profile")
    merged = _merge(_merge(_merge(PROFILES[chosen], file_data), env_data), overrides)
    merged["profile"] = chosen
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err.get("loc", ()))
        where = origin.get(loc) or (f"settings file {path}" if path is not None else "arguments")
        setting = ".".join(loc)
        raise ConfigError(f"bad setting {setting!r} from {where}: {err['msg']}", setting=setting) from None
