"""The README's graph diagram is the compiled graph's own draw_mermaid(), so the picture cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from kgot_errors import build_graph

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_mermaid_diagram_equals_the_compiled_graph():
    blocks = re.findall(r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no mermaid block"
    assert blocks[0].strip() == build_graph().get_graph().draw_mermaid().strip()
