"""The README's command line, server and tool-wrapping sections run as written: commands, flags, exit codes, code."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _synopsis() -> list[tuple[list[str], set[str]]]:
    """(command words, flags) for each `kgot-errors ...` of the Command line synopsis."""
    block = re.search(r"## Command line\n\n```\n(.*?)```", README, re.S).group(1)
    entries: list[tuple[list[str], set[str]]] = []
    for chunk in re.split(r"(?=kgot-errors )", block):
        if not chunk.startswith("kgot-errors "):
            if entries:  # a continuation line of the entry before
                entries[-1][1].update(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", chunk))
            continue
        words = chunk.split()[1:]
        command = [w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w)][:2]
        if command[0] != "sandbox":
            command = command[:1]
        entries.append((command, set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", chunk))))
    return entries


def test_every_command_and_flag_of_the_readme_synopsis_exists():
    from kgot_errors.cli import build_parser

    commands = _subparsers(build_parser())
    listed = {c[0] for c, _ in _synopsis()}
    assert listed == set(commands), f"README lists {sorted(listed)}, the CLI has {sorted(commands)}"
    for words, flags in _synopsis():
        parser = commands[words[0]]
        if len(words) > 1:
            parser = _subparsers(parser)[words[1]]
        known = {o for a in parser._actions for o in a.option_strings}
        assert flags <= known, f"{' '.join(words)}: {sorted(flags - known)} not accepted"


def test_the_readme_exit_code_table_is_the_one_help_prints():
    from kgot_errors.cli import EXIT_CODES

    table = dict(re.findall(r"^\| (\d+(?:, \d+)*) \| (.+?) \|$", _section("Command line"), re.M))
    printed = re.findall(r"^  (\d+)  ", EXIT_CODES, re.M)
    assert [row.split(", ")[0] for row in table] == printed
    help_text = subprocess.run([sys.executable, "-m", "kgot_errors.cli", "--help"], capture_output=True,
                               timeout=60).stdout.decode()
    assert EXIT_CODES in help_text


def test_the_store_retention_commands_run_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGOT_", "OPENAI_"))}
    env["KGOT_DATA_DIR"] = str(tmp_path)
    made = subprocess.run([sys.executable, "-m", "kgot_errors.cli", "repair", "-"], input=b"{'a': 1,}",
                          capture_output=True, timeout=60, env=env)
    assert made.returncode == 0
    block = _blocks(README[README.index("### Keeping the store small"):], "bash")[0]
    for line in block.splitlines():
        command = line.split("#")[0].split()
        assert command[0] == "kgot-errors"
        out = subprocess.run([sys.executable, "-m", "kgot_errors.cli", *command[1:]], capture_output=True,
                             timeout=60, env=env)
        assert out.returncode == 0, (line, out.stderr.decode())
        assert "thread(s), kept 1" in out.stderr.decode()  # a thread of today is kept


def test_the_tool_node_example_runs():
    from langchain_core.tools import tool
    from pydantic import BaseModel

    class Forecast(BaseModel):
        temp: int

    @tool
    def forecast(city: str) -> dict:
        """Tomorrow's forecast."""
        return json.loads("{'temp': 21,}")

    code = next(b for b in _blocks(_section("Wrapping your tools and nodes"), "python") if "tool_node" in b)
    namespace = {"Forecast": Forecast, "forecast": forecast}
    exec(code, namespace)  # noqa: S102 - the README's own example
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    g = StateGraph(MessagesState)
    g.add_node("tools", namespace["tools"])
    g.add_edge(START, "tools")
    g.add_edge("tools", END)
    call = {"name": "forecast", "args": {"city": "Oslo"}, "id": "c1", "type": "tool_call"}
    reply = g.compile().invoke({"messages": [AIMessage("", tool_calls=[call])]})["messages"][-1]
    assert reply.status == "success" and json.loads(reply.content) == {"temp": 21}


@pytest.mark.parametrize("section", ["LangGraph Server"])
def test_the_sync_twin_example_runs(section):
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class Parent(TypedDict, total=False):
        incident: dict
        result: dict

    parent = StateGraph(Parent)
    code = next(b for b in _blocks(_section(section), "python") if "build_sync_graph" in b)
    exec(code, {"parent": parent})  # noqa: S102 - the README's own example
    parent.add_edge(START, "recovery")
    parent.add_edge("recovery", END)
    incident = {"error_type": "json.decoder.JSONDecodeError", "message": "m", "content": "[1,"}
    assert parent.compile().invoke({"incident": incident})["result"]["value"] == [1]
