"""The typical case of issue 14, shared by bench/bench_store.py and the store tests: a ~1.2 KB LLM answer in a
```json fence, single-quoted, with trailing commas, for a 12-property schema."""

from __future__ import annotations

import json

__all__ = ["ANSWER", "PROPERTIES", "SCHEMA", "incident_size", "typical_error"]

PROPERTIES = {
    "id": {"type": "integer"}, "title": {"type": "string"}, "author": {"type": "string"},
    "rating": {"type": "number"}, "verified": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}}, "summary": {"type": "string"},
    "pros": {"type": "array", "items": {"type": "string"}}, "cons": {"type": "array", "items": {"type": "string"}},
    "price": {"type": "number"}, "currency": {"type": "string"}, "published": {"type": "string"},
}
SCHEMA = {"type": "object", "properties": PROPERTIES, "required": list(PROPERTIES), "additionalProperties": False}

ANSWER = """Sure! Here is the review as JSON, with every field you asked for. I double-checked the price and the \
date against the listing, and kept the tags lower case as in your earlier examples.

```json
{
  'id': 1042,
  'title': 'A careful look at the Model X espresso grinder',
  'author': 'Dana Whitfield',
  'rating': 4.5,
  'verified': true,
  'tags': ['coffee', 'grinder', 'kitchen', 'review',],
  'summary': 'The grinder is quiet, consistent and easy to clean; the hopper is small and the timer drifts a \
little after a few weeks of daily use, which matters for anyone dialling in espresso by weight. Over six weeks \
of testing it handled light and dark roasts alike, and retention stayed under a quarter of a gram per dose, \
which is rare at this price.',
  'pros': ['consistent grind size across the whole range', 'quiet motor', 'easy to take apart and clean', \
'small footprint on the counter', 'stepless adjustment with a clear dial',],
  'cons': ['small hopper', 'timer drifts by a second or two', 'the plastic catch cup builds static',],
  'price': 249.99,
  'currency': 'USD',
  'published': '2024-03-18',
}
```
Let me know if you want any field changed."""


def typical_error() -> json.JSONDecodeError:
    """The exception an agent catches on the typical answer."""
    try:
        json.loads(ANSWER)
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("the typical answer must not parse")


def incident_size(error: BaseException) -> int:
    """The incident's own size: its record (content, schema, traceback, ...) as compact JSON."""
    from kgot_errors.state import Incident

    data = Incident.from_exception(error, content=ANSWER, output_schema=SCHEMA).to_data()
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
