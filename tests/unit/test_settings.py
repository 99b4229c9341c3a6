"""Settings: the original defaults, the production profile, files in the original shape, env, clear errors."""

from __future__ import annotations

import json

import pytest

from kgot_errors.errors import ConfigError
from kgot_errors.runtime.settings import Settings, load_settings, parse_memory


def test_defaults_are_the_original_systems():
    s = load_settings(environ={})
    assert s.syntax_error_management.max_retries == 3
    assert s.syntax_error_management.unicode_encoders == ("unicode_escape", "utf-8", "ascii", "latin-1")
    api = s.api_error_management
    assert (api.max_retries, api.min_wait_seconds, api.max_wait_seconds) == (6, 1, 60)
    ex = s.python_executor
    assert (ex.default_timeout, ex.memory_limit, ex.cpu_limit, ex.network_disabled, ex.read_only) == \
        (30, "256m", 0.5, True, True)
    rec = s.error_recovery
    assert (rec.voting_rounds, rec.consensus_threshold, rec.max_refinement_iterations) == (3, 0.6, 3)
    assert s.llm.model is None  # no model unless configured: the LLM layers say so and skip


def test_production_profile_has_the_original_production_numbers():
    s = load_settings(profile="production", environ={})
    assert s.syntax_error_management.max_retries == 5
    api = s.api_error_management
    assert (api.max_retries, api.min_wait_seconds, api.max_wait_seconds, api.circuit_breaker_threshold) == \
        (10, 2, 120, 10)
    ex = s.python_executor
    assert (ex.default_timeout, ex.memory_limit, ex.cpu_limit, ex.max_concurrent_containers) == (60, "1g", 2.0, 5)


ORIGINAL_CONFIG = {
    "syntax_error_management": {"max_retries": 4, "unicode_encoders": ["utf-8"], "llm_correction_enabled": True,
                                "langchain_json_parser_enabled": True},
    "api_error_management": {"max_retries": 8, "min_wait_seconds": 1, "max_wait_seconds": 30,
                             "exponential_backoff_enabled": True},
    "python_executor": {"container_image": "python:3.9-slim", "default_timeout": 10, "memory_limit": "512m",
                        "cpu_limit": "0.5", "network_disabled": True, "read_only": True},
    "error_recovery": {"voting_rounds": 5, "consensus_threshold": 0.8, "max_refinement_iterations": 2},
}


def test_loads_the_original_json_shape(tmp_path):
    path = tmp_path / "error_management_config.json"
    path.write_text(json.dumps(ORIGINAL_CONFIG))
    s = load_settings(path, environ={})
    assert s.syntax_error_management.max_retries == 4
    assert s.api_error_management.max_wait_seconds == 30
    assert s.python_executor.cpu_limit == 0.5  # the original wrote it as a string
    assert s.error_recovery.voting_rounds == 5


def test_loads_toml(tmp_path):
    path = tmp_path / "kgot.toml"
    path.write_text('profile = "production"\n[api_error_management]\nmax_retries = 3\n')
    s = load_settings(path, environ={})
    assert (s.profile, s.api_error_management.max_retries, s.api_error_management.max_wait_seconds) == \
        ("production", 3, 120)


def test_environment_overrides_file_and_explicit_overrides_win(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"api_error_management": {"max_retries": 8}}))
    env = {"KGOT_API_ERROR_MANAGEMENT__MAX_RETRIES": "9", "KGOT_MODEL": "openai:gpt-4o-mini",
           "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "KGOT_SANDBOX_BACKEND": "bwrap"}
    s = load_settings(path, environ=env)
    assert s.api_error_management.max_retries == 9
    assert (s.llm.model, s.llm.base_url, s.python_executor.backend) == \
        ("openai:gpt-4o-mini", "http://127.0.0.1:8000/v1", "bwrap")
    assert load_settings(path, environ=env, error_recovery={"voting_rounds": 7}).error_recovery.voting_rounds == 7


@pytest.mark.parametrize(
    ("data", "setting"),
    [
        ({"syntax_error_management": {"max_retrys": 3}}, "syntax_error_management.max_retrys"),
        ({"api_error_management": {"max_retries": "many"}}, "api_error_management.max_retries"),
        ({"api_error_management": {"min_wait_seconds": 90}}, "api_error_management"),
        ({"python_executor": {"memory_limit": "lots"}}, "python_executor.memory_limit"),
        ({"python_executor": {"network_disabled": False}}, "python_executor.network_disabled"),
        ({"error_recovery": {"consensus_threshold": 1.5}}, "error_recovery.consensus_threshold"),
        ({"surprise": {}}, "surprise"),
    ],
)
def test_unknown_keys_and_bad_values_name_the_setting_and_the_file(tmp_path, data, setting):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.setting == setting
    assert str(path) in str(info.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="KGOT_ERROR_RECOVERY__VOTING_ROUNDS"):
        load_settings(environ={"KGOT_ERROR_RECOVERY__VOTING_ROUNDS": "zero"})


def test_unknown_profile_and_unreadable_or_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'staging'"):
        load_settings(profile="staging", environ={})
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(tmp_path / "missing.json", environ={})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid json"):
        load_settings(broken, environ={})


def test_settings_are_frozen_values():
    s = Settings()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        s.profile = "production"  # type: ignore[misc]


@pytest.mark.parametrize(("text", "n"), [("256m", 256 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1024", 1024),
                                         ("1.5g", int(1.5 * (1 << 30))), ("64MB", 64 << 20)])
def test_parse_memory(text, n):
    assert parse_memory(text) == n


def test_every_lazy_public_name_is_the_function_even_after_its_module_was_imported():
    """A package whose public function shares its module's name (`integration.guard`, `observability.doctor`)
    hands out the module once anything imported it; the exported names live in differently named modules."""
    import importlib
    import pkgutil

    import kgot_errors

    for info in pkgutil.walk_packages(kgot_errors.__path__, "kgot_errors."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        submodules = {name for _, name, _ in pkgutil.iter_modules(package.__path__)}
        for name, module in getattr(package, "_EXPORTS", {}).items():
            assert name not in submodules, f"{info.name}.{name} is both a module and an exported name"
            importlib.import_module(module)
            assert not isinstance(getattr(package, name), type(importlib)), f"{info.name}.{name} is a module"
