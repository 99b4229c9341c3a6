"""The model factory: which model the settings and environment give, and that recover() uses it over real HTTP."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI

from kgot_errors import recover
from kgot_errors.errors import ConfigError
from kgot_errors.runtime.model import DEFAULT_MODEL, OPENROUTER_BASE_URL, make_model, model_identity
from kgot_errors.runtime.settings import Settings, load_settings
from kgot_errors.state import Layer
from kgot_errors.testing import answer, by_layer, loopback_openai


def configured(**environ: str) -> tuple[Settings, dict[str, str]]:
    return load_settings(environ=environ), environ


def build(**environ: str):
    settings, env = configured(**environ)
    return make_model(settings, env)


def test_nothing_configured_means_no_model():
    assert build() is None
    assert build(KGOT_PROFILE="production") is None


def test_an_openai_key_alone_gives_chat_openai_with_the_default_model_and_no_client_retries():
    model = build(OPENAI_API_KEY="sk-test")
    assert isinstance(model, ChatOpenAI)
    assert (model.model_name, model.max_retries, model.openai_api_key.get_secret_value()) == \
        (DEFAULT_MODEL, 0, "sk-test")
    assert model.request_timeout == Settings().llm.timeout_seconds


@pytest.mark.parametrize("spec", ["openai:gpt-4.1-mini", "gpt-4.1-mini"])
def test_kgot_model_with_a_base_url_targets_that_server_without_a_real_key(spec):
    model = build(KGOT_MODEL=spec, OPENAI_BASE_URL="http://127.0.0.1:11434/v1")
    assert (model.model_name, model.openai_api_base) == ("gpt-4.1-mini", "http://127.0.0.1:11434/v1")
    assert model.openai_api_key.get_secret_value() == "not-needed"


def test_openrouter_key_selects_openrouter_and_its_model_naming():
    model = build(OPENROUTER_API_KEY="or-test")
    assert (model.openai_api_base, model.model_name) == (OPENROUTER_BASE_URL, f"openai/{DEFAULT_MODEL}")
    named = build(KGOT_MODEL="openrouter:anthropic/claude-3.5-haiku", OPENROUTER_API_KEY="or-test")
    assert named.model_name == "anthropic/claude-3.5-haiku"
    assert build(KGOT_MODEL="meta-llama/llama-3-8b", OPENROUTER_API_KEY="or").model_name == "meta-llama/llama-3-8b"


def test_an_openai_key_wins_over_openrouter_for_bare_model_names():
    model = build(KGOT_MODEL="gpt-4o", OPENAI_API_KEY="sk-test", OPENROUTER_API_KEY="or-test")
    assert model.openai_api_base is None and model.model_name == "gpt-4o"


def test_settings_tune_the_client():
    settings = load_settings(environ={"OPENAI_API_KEY": "k", "KGOT_LLM__TIMEOUT_SECONDS": "7.5",
                                      "KGOT_LLM__CLIENT_MAX_RETRIES": "1", "KGOT_LLM__TEMPERATURE": "0.2"})
    model = make_model(settings, {})
    assert (model.request_timeout, model.max_retries, model.temperature) == (7.5, 1, 0.2)


@pytest.mark.parametrize(("environ", "says"), [
    ({"KGOT_MODEL": "openai:gpt-4o"}, "needs OPENAI_API_KEY"),
    ({"KGOT_MODEL": "openrouter:openai/gpt-4o"}, "needs OPENROUTER_API_KEY"),
    ({"KGOT_MODEL": "anthropic:claude-3-5-haiku-latest", "OPENAI_API_KEY": "k"}, "langchain-anthropic"),
    ({"KGOT_MODEL": "nosuchprovider:model"}, "cannot build model"),
])
def test_a_named_model_that_cannot_be_reached_is_a_config_error(environ, says):
    with pytest.raises(ConfigError, match=says):
        build(**environ)


def test_model_identity_tells_models_apart_and_is_stable():
    a = build(KGOT_MODEL="m1", OPENAI_BASE_URL="http://127.0.0.1:1/v1")
    assert model_identity(a) == model_identity(build(KGOT_MODEL="m1", OPENAI_BASE_URL="http://127.0.0.1:1/v1"))
    assert model_identity(a) != model_identity(build(KGOT_MODEL="m2", OPENAI_BASE_URL="http://127.0.0.1:1/v1"))
    assert model_identity(a) != model_identity(build(KGOT_MODEL="m1", OPENAI_BASE_URL="http://127.0.0.1:2/v1"))
    assert model_identity(None) == "none"


INCIDENT = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting value",
            "content": "{name: Bob, age: thirty",
            "output_schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}}


def test_recover_builds_the_model_from_the_environment_when_none_is_passed(monkeypatch):
    with loopback_openai(by_layer(llm_fix=[answer('{"age": 30}')])) as server:
        monkeypatch.setenv("KGOT_MODEL", "openai:env-model")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = recover(INCIDENT, checkpointer=None)
    assert (result.recovered, result.recovered_by, result.llm_calls) == (True, Layer.LLM_FIX, 1)
    [request] = server.requests
    assert request.body["model"] == "env-model"


def test_an_explicit_runtime_context_is_never_given_a_factory_model(monkeypatch):
    from kgot_errors.runtime.context import RecoveryContext

    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-be-used")
    result = recover(INCIDENT, runtime_context=RecoveryContext(), checkpointer=None)
    assert result.attempts_by(Layer.LLM_FIX)[0].verdict == "skipped"
