"""Test doubles shipped with the library: a loopback OpenAI-compatible server for tests, notebooks and benchmarks."""

from kgot_errors.testing.clock import RecordingSleep
from kgot_errors.testing.openai_server import (
    LoopbackOpenAI,
    Reply,
    Request,
    answer,
    by_layer,
    chat,
    empty_choices,
    error,
    garbage,
    layer_of,
    loopback_model,
    loopback_openai,
    slow,
)

__all__ = [
    "LoopbackOpenAI",
    "RecordingSleep",
    "Reply",
    "Request",
    "answer",
    "by_layer",
    "chat",
    "empty_choices",
    "error",
    "garbage",
    "layer_of",
    "loopback_model",
    "loopback_openai",
    "slow",
]
