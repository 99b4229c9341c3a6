"""Schemas never stall or reach out: backtracking patterns end at a deadline, remote references are never fetched,
dangling or endless references and unencodable names are typed errors."""

from __future__ import annotations

import copy
import json
import sys
import time

import pytest

from kgot_errors import recover, recover_many
from kgot_errors.errors import InvalidSchema, SchemaTimeout
from kgot_errors.repair import parser_layer, unicode_layer
from kgot_errors.repair import _schema, coerce_to_schema, load_schema, repair_json
from kgot_errors.repair._schema import pattern_budget, safe_search

REDOS = [r"^(a|aa)+$", r"^(a+)+b$", r"^([a-z]+)*\d$"]


@pytest.mark.parametrize("pattern", REDOS)
def test_a_backtracking_pattern_ends_at_its_deadline_as_a_failed_verdict(pattern: str) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
    text = '{"s": "' + "a" * 30_000 + '!"}'
    started = time.monotonic()
    out = unicode_layer(text, schema)
    out2 = parser_layer(text, schema)
    assert time.monotonic() - started < 2.0
    assert not out.ok and not out2.ok
    if "cannot be evaluated safely" not in (out.reason or ""):
        assert "does not match" in (out.reason or "")  # the engine proved the mismatch within the deadline


@pytest.mark.parametrize("text", ['{"id": "' + "a" * 40 + '!"}', "{'id': '" + "a" * 40 + "!',}"])
def test_json_repairs_schema_mode_never_runs_a_pattern_unbounded(text: str) -> None:
    """The last resort (json_repair's schema mode, whose validator uses `re`) gets the schema without its
    patterns: a short string that backtracks for hours there ends at once (found by bench/bench_fuzz.py)."""
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^(a+)+$"}}}
    started = time.monotonic()
    out = parser_layer(text, schema)
    assert time.monotonic() - started < 2.0
    assert not out.ok and "does not match" in (out.reason or "")


def test_a_batch_of_200_with_a_backtracking_pattern_ends_in_bounded_time() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": r"^(a|aa)+$"}}}
    incidents = [{"error_type": "ValueError", "message": "bad", "content": '{"s": "' + "a" * 5_000 + '!",}',
                  "output_schema": schema} for _ in range(200)]
    started = time.monotonic()
    results = recover_many(incidents, checkpointer=None, sandbox=False)
    assert time.monotonic() - started < 30
    assert len(results) == 200 and not any(r.recovered for r in results)
    assert all("cannot be evaluated safely" in r.summary for r in results)



def _slow_string(pattern: str) -> tuple[str, float]:
    """A string `pattern` backtracks on for 10-60 ms on this machine (under its 0.1 s deadline), and that time."""
    import regex

    for n in range(14, 40):
        text = "a" * n + "!"
        started = time.monotonic()
        regex.search(pattern, text, timeout=5)
        took = time.monotonic() - started
        if took >= 0.01:
            return text, took
    raise AssertionError("no string backtracks for 10 ms")


def test_many_strings_each_under_the_deadline_share_one_budget() -> None:
    """Each string ends under the per-string deadline, but together they would run for many seconds: all of a
    value's searches share one budget, and the pattern that used it up is refused at once afterwards."""
    pattern = r"(a|aa)+$"
    slow, took = _slow_string(pattern)
    count = int(8.0 / took) + 1  # at least 8 s of searching, unbounded
    schema = {"type": "array", "items": {"type": "string", "pattern": pattern}}
    text = "[" + ", ".join(f'"{slow}"' for _ in range(count)) + "]"
    started = time.monotonic()
    out = unicode_layer(text, schema)
    first = time.monotonic() - started
    out2 = parser_layer(text, schema)
    assert first < 2.5 and time.monotonic() - started < 4.0
    assert not out.ok and "took over 1.0 s together on this value" in (out.reason or "")
    assert not out2.ok and "cannot be evaluated safely" in (out2.reason or "")


def _branching_schema() -> dict:
    """Every level's anyOf has two branches that both fail only deep down: plain validation visits 2**depth of them."""
    branch = lambda required: {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}},  # noqa: E731
                               "required": [required]}
    return {"$defs": {"n": {"anyOf": [branch("b"), branch("c")]}}, "$ref": "#/$defs/n"}


@pytest.mark.parametrize("broken", [False, True], ids=["valid-json", "broken-json"])
def test_a_schema_whose_branches_multiply_with_depth_ends_at_the_deadline(broken: bool) -> None:
    text = '{"a": ' * 40 + "{}" + "}" * 40
    started = time.monotonic()
    engine = repair_json(text[:-1] if broken else text, _branching_schema())
    graph = recover(ValueError("x"), content=text[:-1] if broken else text, schema=_branching_schema(),
                    checkpointer=None)
    assert time.monotonic() - started < 8.0  # 2**40 branch visits unbounded
    assert engine.verdict == "failed" and "the schema's references branch too much to evaluate safely" in engine.reason
    assert not graph.recovered and "the schema's references branch too much" in graph.summary


def test_a_small_schema_whose_references_double_per_level_is_refused_at_load_time() -> None:
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(40)}
    defs["d40"] = {"minimum": 0}
    started = time.monotonic()
    with pytest.raises(InvalidSchema, match="references branch too much"):
        load_schema({"$defs": defs, "$ref": "#/$defs/d0"})  # 2**40 descents on the probe `null`
    assert time.monotonic() - started < 2.0


def test_references_that_carry_work_per_item_end_at_the_backstop(monkeypatch) -> None:
    monkeypatch.setattr(_schema, "REF_BACKSTOP_S", 0.5)
    defs = {f"d{i}": {"if": {"type": "array", "minItems": 1}, "then": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2},
                      "items": {"type": "integer"}} for i in range(40)}
    defs["d40"] = {}
    schema = {"$defs": defs, "$ref": "#/$defs/d0"}  # the doubling sits behind `if`: load_schema's probes pass
    started = time.monotonic()
    out = repair_json(json.dumps([0] * 300), schema)  # 19 s with the count alone, hours for 30 KB
    assert out.verdict == "failed" and "ran past 0.5 s" in out.reason
    assert time.monotonic() - started < 10.0


def test_long_valid_values_are_not_cut_short_by_any_clock() -> None:
    schema = {"type": "array", "items": {"$ref": "#/$defs/item"},
              "$defs": {"item": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}}}
    text = json.dumps([{"a": i, "b": "x"} for i in range(25_000)])  # about 1 s of validation on its own
    assert repair_json(text, schema).verdict == "recovered"
    prose = "Here is the JSON:\n" + '{"b": 1, "a": [' + "1," * 300_000 + '1]}\nThanks.'  # a slow parse first
    found = repair_json(prose, {"type": "object", "properties": {"b": {"type": "integer"}}, "patternProperties":
                                {"^b$": {"type": "integer"}}})
    assert found.verdict == "recovered" and found.value["b"] == 1


def _tool_union(tools: int) -> dict:
    """A plan of steps, each one of `tools` tools behind a `$ref`, as pydantic writes a discriminated union."""
    defs = {f"Tool{i}": {"type": "object", "properties": {"name": {"const": f"tool{i}"}, "arg": {"type": "integer"}},
                         "required": ["name", "arg"]} for i in range(tools)}
    union = {"oneOf": [{"$ref": f"#/$defs/Tool{i}"} for i in range(tools)],
             "discriminator": {"propertyName": "name"}}
    return {"$defs": defs, "type": "object", "properties": {"steps": {"type": "array", "items": union}},
            "required": ["steps"]}


@pytest.mark.parametrize("padding", ["none", "1000 unused refs", "a 2000-wide anyOf of one ref"])
def test_a_doubling_schema_is_not_let_off_by_its_many_references(padding: str) -> None:
    defs: dict = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(40)}
    defs["d40"] = {"minimum": 0}
    if padding == "1000 unused refs":
        defs.update({f"pad{i}": {"$ref": "#/$defs/d40"} for i in range(1_000)})  # sites that add no width
    elif padding != "none":
        defs["unused"] = {"anyOf": [{"$ref": "#/$defs/d40"}] * 2_000}  # one target, side by side 2,000 times
    schema = {"$defs": defs, "type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}}
    started = time.monotonic()
    out = repair_json(json.dumps({"a": 1, "b": list(range(300))}), schema)  # many nodes the doubling never sees
    assert out.verdict == "failed" and "references branch too much" in out.reason
    assert time.monotonic() - started < 5.0  # 20 s when the allowance grew with every $ref site (2 backstops)


def test_a_union_whose_branches_wrap_their_references_is_as_wide_as_its_tools() -> None:
    schema = _tool_union(40)
    union = schema["properties"]["steps"]["items"]
    union["oneOf"] = [{"allOf": [b], "description": f"tool {i}"} for i, b in enumerate(union["oneOf"])]
    value = {"steps": [{"name": f"tool{i % 40}", "arg": i} for i in range(300)]}
    out = repair_json(json.dumps(value), schema)
    assert out.verdict == "recovered" and out.value == value, out.reason


def test_a_valid_value_under_a_wide_union_of_references_is_judged_in_full() -> None:
    value = {"steps": [{"name": f"tool{i % 40}", "arg": i} for i in range(1_000)]}  # 40 $refs tried per step
    text = json.dumps(value)
    out = repair_json(text, _tool_union(40))
    assert out.verdict == "recovered" and out.text == text and out.value == value


def test_a_json_encoded_array_inside_the_value_brings_its_own_allowance() -> None:
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
              "$defs": {"item": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
    inner = [{"a": i} for i in range(2_000)]
    value, changes = coerce_to_schema({"items": json.dumps(inner)}, schema)  # the outer value is 2 nodes
    assert value == {"items": inner} and [c["detail"] for c in changes] == ["decoded a JSON-encoded array string"]


def test_a_pattern_that_only_met_a_spent_budget_stays_usable() -> None:
    with pattern_budget():
        _schema._PATTERN_TIME.get()[0] = 0.0  # noqa: SLF001 - stands for a layer that spent its search time
        with pytest.raises(SchemaTimeout, match="took over 1.0 s together"):
            safe_search("^b$", "b")
    assert safe_search("^b$", "b")


def test_a_schemas_verdict_does_not_depend_on_how_deep_the_callers_stack_is() -> None:
    schema: dict = {"type": "integer"}
    for _ in range(60):
        schema = {"type": "object", "properties": {"a": schema}}

    def down(frames: int, fresh: dict) -> str:
        if frames:
            return down(frames - 1, fresh)
        try:
            load_schema(fresh)
        except InvalidSchema as exc:
            return str(exc)
        return "ok"

    for depth in (sys.getrecursionlimit() - 300, sys.getrecursionlimit() - 120, 0):
        fresh = copy.deepcopy(schema)  # a new object, its check not cached: all of it runs at this depth
        _schema._PROBLEMS.clear()  # noqa: SLF001
        assert down(depth, fresh) == "ok", depth  # how deep the caller is does not decide it


def test_a_schema_that_recurses_without_end_is_checked_once(monkeypatch) -> None:
    checks = []
    monkeypatch.setattr(_schema, "_check_refs", lambda schema: checks.append(schema))
    for _ in range(3):
        with pytest.raises(InvalidSchema, match="recurse without end"):
            load_schema({"$defs": {"loop": {"allOf": [{"$ref": "#/$defs/loop"}]}}, "$ref": "#/$defs/loop"})
    assert len(checks) == 2  # once on the caller's stack, once on a fresh one; then the answer is cached


def test_coercing_many_values_is_not_cut_short_by_the_step_budget() -> None:
    value, changes = coerce_to_schema([str(i) for i in range(30_000)], {"type": "array", "items": {"type": "integer"}})
    assert value == list(range(30_000)) and len(changes) == 30_000


def test_a_coercion_looks_only_where_the_schema_found_errors(monkeypatch) -> None:
    from kgot_errors.repair import _coerce

    monkeypatch.setattr(_coerce, "STEP_BUDGET", 50)  # far fewer steps than the array has items
    monkeypatch.setattr(_coerce, "STEPS_PER_NODE", 0)
    schema = {"type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}}},
              "$defs": {"step": {"type": "object", "properties": {"arg": {"type": "integer"}}}}}
    value = {"steps": [{"arg": i} for i in range(1_000)]}
    value["steps"][7]["arg"] = "7"
    out = repair_json(json.dumps(value), schema)
    assert out.verdict == "recovered" and out.value["steps"] == [{"arg": i} for i in range(1_000)]
    assert [c["path"] for c in out.changes] == ["$.steps[7].arg"]


@pytest.mark.parametrize(("value", "schema", "fixed"), [
    ({"data": {"n": "1"}}, {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
     {"n": 1}),  # the error is at the root: all of it is looked at, the wrapper too
    ({"a": {"b": ["1", 2]}, "c": "x"}, {"properties": {"a": {"properties": {"b": {"items": {"type": "integer"}}}}}},
     {"a": {"b": [1, 2]}, "c": "x"}),
    ([{"k": "1"}, {"k": 2}], {"items": {"properties": {"k": {"type": "integer"}}}, "uniqueItems": True},
     [{"k": 1}, {"k": 2}]),
])
def test_a_coercion_told_where_the_errors_are_finds_what_a_full_one_finds(value, schema, fixed) -> None:
    from kgot_errors.repair._schema import schema_report

    where = schema_report(value, schema)[1]
    assert coerce_to_schema(value, schema, misfits=where)[0] == coerce_to_schema(value, schema)[0] == fixed


def test_a_shallow_branching_value_is_still_judged_on_its_merits() -> None:
    fits = '{"a": {"a": {"b": 1}, "b": 2}, "c": 3}'
    assert repair_json(fits, _branching_schema()).verdict == "recovered"
    misfit = repair_json('{"a": {"a": {}, "b": 2}, "c": 3}', _branching_schema())
    assert misfit.verdict == "failed" and "is not valid under any of the given schemas" in misfit.reason


def test_a_remote_ref_is_never_fetched(listener) -> None:
    base, hits = listener
    for schema in ({"$ref": f"{base}/schema.json"},
                   {"type": "object", "properties": {"a": {"$ref": f"{base}/a.json#/x"}}},
                   {"$defs": {"b": {"$ref": f"{base}/b.json"}}, "items": {"$ref": "#/$defs/b"}}):
        with pytest.raises(InvalidSchema, match="never fetched"):
            load_schema(schema)
    assert hits == []


@pytest.mark.parametrize(("schema", "message"), [
    ({"$ref": "#/$defs/missing"}, "points to nothing"),
    ({"$ref": "#"}, "recurse without end"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "recurse without end"),
    ({"properties": {"\ud800": {}}}, "lone surrogate"),
    ({"$ref": "#nowhere"}, "anchor"),
])
def test_broken_references_and_names_are_invalid_schemas(schema: dict, message: str) -> None:
    with pytest.raises(InvalidSchema, match=message):
        load_schema(schema)


def test_a_recursive_tree_schema_is_fine() -> None:
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    assert unicode_layer('{"kids": [{"kids": []}]}', tree).ok


def test_the_guidance_schema_drops_patterns_only() -> None:
    from kgot_errors.repair._schema import without_patterns

    schema = {"type": "object", "patternProperties": {"^x": {"type": "integer"}},
              "properties": {"pattern": {"type": "string", "pattern": "^a"}, "c": {"const": {"pattern": "kept"}}},
              "items": [{"pattern": "^b"}], "enum": [{"pattern": "data"}]}
    assert without_patterns(schema) == {
        "type": "object", "properties": {"pattern": {"type": "string"}, "c": {"const": {"pattern": "kept"}}},
        "items": [{}], "enum": [{"pattern": "data"}]}
