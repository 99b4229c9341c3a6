"""Program output made safe for a terminal: control characters shown as escapes, never obeyed."""

from __future__ import annotations

import re

from kgot_errors.sandbox._result import ExecResult

__all__ = ["RESET", "printable", "verdict_line"]

RESET = "\x1b[0m"  # SGR reset: attributes the output might have left set never hide our own line
# C0 controls except tab and newline, DEL, C1 controls (U+0080-U+009F: CSI/OSC on 8-bit terminals), and the
# bidi / line-separator marks that reorder or break a line
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    ch = ord(match.group())
    return f"\\x{ch:02x}" if ch < 0x100 else f"\\u{ch:04x}"


def printable(text: str) -> str:
    """`text` with every control character as a visible escape (\\x1b, \\r, \\x9b ...): ESC, OSC 52
    clipboard writes, SGR 8 (hidden), carriage returns cannot act on the terminal."""
    return _CONTROL.sub(_escape, text)


def verdict_line(result: ExecResult) -> str:
    """The run's ending in one line, for the CLI (after the program's output)."""
    if result.timed_out:
        return "kgot-errors: killed by the sandbox (timeout)"
    if result.killed_by:
        return f"kgot-errors: killed by the sandbox ({result.killed_by})"
    if result.exception:
        return f"kgot-errors: uncaught {printable(result.exception)} (exit {result.exit_code})"
    if result.signal:
        return f"kgot-errors: died of signal {result.signal} (exit {result.exit_code})"
    if result.ending == "lost":
        return "kgot-errors: the sandbox lost track of the program (no verdict)"
    return f"kgot-errors: exit {result.exit_code}"
