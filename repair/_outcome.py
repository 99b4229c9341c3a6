"""What a repair produced and what a caller accepts of it: Outcome, the changes to the data, the policy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ACCEPT", "DEFAULT_POLICY", "DEGRADE", "REFUSE", "Change", "Outcome", "change", "describe", "disposition",
           "with_input_damage"]

MAX_STEPS = 20

Change = dict[str, str]
"""One change a repair made to the data, as plain data: `{"kind", "path", "detail"}`. Kinds: `coerced`
(lossless: `"1"` -> 1), `added` (a value or structure not in the text), `removed` (data not kept),
`truncated` (a cut-off document completed), `restructured` (every word kept, but the text's nesting not: an
object or array merged into the one around it)."""


def change(kind: str, path: str, detail: str) -> Change:
    return {"kind": kind, "path": path, "detail": detail}


def describe(changes: list[Change]) -> list[str]:
    """Changes as steps for the repair log: `$.a: coerced string "1" to integer`."""
    steps = [f"{c['path']}: {c['detail']}" for c in changes[:MAX_STEPS]]
    if len(changes) > MAX_STEPS:
        steps.append(f"... and {len(changes) - MAX_STEPS} more changes")
    return steps


ACCEPT, DEGRADE, REFUSE = "accept", "degrade", "refuse"
DEFAULT_POLICY: dict[str, str] = {"coerced": ACCEPT, "truncated": DEGRADE, "restructured": DEGRADE,
                                  "added": REFUSE, "removed": REFUSE}
"""What a caller accepts of each kind of change (see Change): lossless coercions are a plain
recovery, a completed truncated document or a guessed nesting is accepted as `degraded`, invented or
deleted data is no fix."""
_RANK = {ACCEPT: 0, DEGRADE: 1, REFUSE: 2}


def disposition(changes: tuple[Change, ...] | list[Change], policy: dict[str, str] | None = None) -> str:
    """The policy's word on a set of changes: the strictest of its kinds' dispositions."""
    rules = DEFAULT_POLICY if policy is None else {**DEFAULT_POLICY, **policy}
    return max((rules.get(c["kind"], REFUSE) for c in changes), key=_RANK.__getitem__, default=ACCEPT)


@dataclass(frozen=True)
class Outcome:
    """What a repair layer produced: the validated value, or why there is none."""

    ok: bool
    value: Any = None
    text: str | None = None
    steps: tuple[str, ...] = ()
    reason: str | None = None
    errors: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()  # what the fix did to the data (empty: the data is the text's)
    degraded: bool = False  # ok, but only as `degraded`: the policy accepts these changes with a mark



def with_input_damage(out: Outcome, notes: list[str] | tuple[str, ...], policy: dict[str, str] | None) -> Outcome:
    """A fix read from content whose bytes had to be replaced before repair (invalid UTF-8, lone surrogates) carries
    that loss as a `removed` change, which the policy then judges (by default: no fix, the original data is gone)."""
    if not out.ok or not notes:
        return out
    changes = (*out.changes, *(change("removed", "$", note) for note in notes))
    verdict = disposition(changes, policy)
    if verdict == REFUSE:
        return Outcome(False, steps=out.steps, changes=changes,
                       reason=f"the content was damaged before recovery ({notes[0]}): a value read from it is not "
                              "the original data, which the policy refuses")
    return replace(out, changes=changes, degraded=verdict == DEGRADE)
