"""vote against a loopback OpenAI-compatible server: parallel samples through Send, canonical counting, abstentions,
ties and low consensus escalated, the winner validated, calls and tokens summed into the vote's one Attempt."""

from __future__ import annotations


import pytest
from langgraph.checkpoint.memory import InMemorySaver

from kgot_errors import recover
from kgot_errors.graph.builder import build_graph
from kgot_errors.runtime.context import RecoveryContext
from kgot_errors.runtime.settings import LlmSettings, RecoverySettings, Settings, SyntaxSettings
from kgot_errors.state import Layer, RecoveryResult
from kgot_errors.testing import RecordingSleep, answer, by_layer, error, layer_of, loopback_model, loopback_openai

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
INCIDENT = {"error_type": "json.decoder.JSONDecodeError", "message": "Expecting property name",
            "content": "{name: Bob, age: thirty", "output_schema": SCHEMA}
GOOD = '{"name": "Bob", "age": 30}'
GOOD_AGAIN = '{\n  "age": 30.0,\n  "name": "Bob"\n}'  # the same answer, laid out differently
OTHER = '{"name": "Rob", "age": 31}'
THIRD = '{"name": "Bobby", "age": 3}'
USAGE = 15


def settings(*, rounds: int = 3, **llm: object) -> Settings:
    return Settings(syntax_error_management=SyntaxSettings(max_retries=1),
                    error_recovery=RecoverySettings(max_refinement_iterations=1, voting_rounds=rounds),
                    llm=LlmSettings(**llm))


def before_vote(**vote: object) -> object:
    """llm_fix and refine each fail once (answers missing `age`), then the vote samples answer from `vote`."""
    return by_layer(llm_fix=[answer('{"name": "Bob"}')], refine=[answer('{"name": "Robert"}')], **vote)


def voted(result: RecoveryResult):
    [only] = result.attempts_by(Layer.VOTE)
    return only


def sent(server, layer: str = "vote") -> list:
    return [r for r in server.requests if layer_of(r) == layer]


def counted(result: RecoveryResult, server) -> None:
    assert result.llm_calls == sum(a.llm_calls for a in result.attempts) == len(server.requests)


async def test_a_two_of_three_majority_of_equivalent_answers_recovers_and_the_table_shows_it():
    with loopback_openai(before_vote(vote=[answer(GOOD), answer(GOOD_AGAIN), answer(OTHER)])) as server:
        ctx = RecoveryContext(settings=settings(), model=loopback_model(server))
        graph = build_graph(InMemorySaver())
        config = {"configurable": {"thread_id": "vote-1"}}
        out = await graph.ainvoke({"incident": INCIDENT}, config, context=ctx)
        state = (await graph.aget_state(config)).values
    result = RecoveryResult.from_data(out["result"])
    assert (result.recovered, result.recovered_by, result.value) == (True, Layer.VOTE, {"name": "Bob", "age": 30})
    vote = voted(result)
    assert (vote.verdict, vote.validator, vote.llm_calls, vote.tokens) == ("recovered", "json+schema", 3, 3 * USAGE)
    table = vote.evidence["table"]
    assert [(row["answer"], row["votes"], row["valid"]) for row in table] == \
        [('{"age":30,"name":"Bob"}', 2, True), ('{"age":31,"name":"Rob"}', 1, True)]
    assert (vote.evidence["valid_votes"], vote.evidence["share"], vote.evidence["tie"]) == (3, 0.6667, False)
    assert sorted(i for row in table for i in row["samples"]) == [0, 1, 2]
    assert sorted(b["index"] for b in state["ballots"]) == [0, 1, 2]  # one ballot per Send, none duplicated
    assert [r.body["temperature"] for r in sent(server)] == [0.7] * 3
    assert all(r.body["response_format"]["type"] == "json_schema" for r in sent(server))
    counted(result, server)


def test_a_tie_is_escalated_with_the_vote_table():
    with loopback_openai(before_vote(vote=[answer(GOOD), answer(OTHER)])) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings(rounds=2))
    vote = voted(result)
    assert (vote.verdict, vote.reason, vote.evidence["escalated"]) == ("failed", "tie: 2 answers with 1 vote(s) each",
                                                                       True)
    assert [row["votes"] for row in vote.evidence["table"]] == [1, 1]
    assert (result.recovered, result.outcome) == (False, "escalated")
    counted(result, server)


def test_a_plurality_below_the_threshold_is_escalated():
    votes = [answer(GOOD), answer(GOOD), answer(OTHER), answer(THIRD), answer('{"name": "B", "age": 1}')]
    with loopback_openai(before_vote(vote=votes)) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings(rounds=5))
    vote = voted(result)
    assert vote.reason == "no consensus: the top answer has 40% of 5 valid votes, below 60%"
    assert (vote.evidence["share"], vote.evidence["tie"], result.outcome) == (0.4, False, "escalated")
    counted(result, server)


def test_a_failed_sample_abstains_and_the_others_still_decide():
    with loopback_openai(before_vote(vote=[error(401, "bad key"), answer(GOOD), answer(GOOD)])) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings())
    vote = voted(result)
    assert (vote.verdict, vote.evidence["valid_votes"], vote.evidence["share"]) == ("recovered", 2, 1.0)
    [abstained] = vote.evidence["abstained"]
    assert abstained["reason"].startswith("abstains: provider failed: permanent")
    assert (vote.llm_calls, vote.tokens) == (3, 2 * USAGE)
    counted(result, server)


def test_a_consensus_on_an_answer_that_misses_the_schema_is_escalated_not_recovered():
    wrong = '{"name": "Bob", "age": "thirty years"}'
    with loopback_openai(before_vote(vote=[answer(wrong)] * 3)) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings())
    vote = voted(result)
    assert vote.reason.startswith("the majority answer fails validation: the answer does not validate")
    evidence = vote.evidence
    assert (evidence["share"], evidence["table"][0]["valid"], evidence["escalated"]) == (1.0, False, True)
    assert (result.recovered, result.outcome) == (False, "escalated")
    counted(result, server)


def test_a_transient_failure_re_runs_only_that_sample():
    sleep = RecordingSleep()
    votes = [error(429, retry_after=2), answer(GOOD), answer(GOOD), answer(GOOD)]
    with loopback_openai(before_vote(vote=votes)) as server:
        ctx = RecoveryContext(settings=settings(), model=loopback_model(server), sleep=sleep)
        result = recover(INCIDENT, runtime_context=ctx, checkpointer=None)
    vote = voted(result)
    assert (vote.verdict, vote.evidence["valid_votes"], vote.llm_calls, vote.tokens) == ("recovered", 3, 4, 3 * USAGE)
    assert sleep.waits == [2.0] and len(sent(server)) == 4
    counted(result, server)


def test_the_llm_budget_cuts_the_rounds_and_says_so():
    with loopback_openai(before_vote(vote=[answer(GOOD), answer(GOOD)])) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings(max_llm_calls=4))
    vote = voted(result)
    assert (vote.verdict, vote.evidence["rounds"], vote.evidence["rounds_cut_by_budget"]) == ("recovered", 2, 3)
    assert result.llm_calls == 4
    counted(result, server)


def test_a_budget_too_small_for_two_samples_skips_the_vote():
    with loopback_openai(before_vote()) as server:
        result = recover(INCIDENT, model=loopback_model(server), checkpointer=None, settings=settings(max_llm_calls=3))
    vote = voted(result)
    assert (vote.verdict, vote.reason) == ("skipped", "the LLM budget leaves 1 call(s): too few for a vote")
    assert sent(server) == []


def test_voted_arguments_are_proven_by_one_call_of_the_operation_with_the_winner(divide):
    incident = {"error_type": "ZeroDivisionError", "message": "division by zero", "operation": "divide",
                "arguments": {"a": 1, "b": 0}}
    script = by_layer(refine=[answer('{"a": 1, "b": 0}')],
                      vote=[answer('{"a": 1, "b": 2}'), answer('{"b": 2, "a": 1.0}'), answer('{"a": 1, "b": 4}')])
    with loopback_openai(script) as server:
        result = recover(incident, model=loopback_model(server), operations={"divide": divide}, checkpointer=None,
                         settings=settings())
    vote = voted(result)
    assert (vote.verdict, vote.validator, result.value) == ("recovered", "operation re-run", 0.5)
    assert divide.calls == [(1, 2)]  # samples are never run; only the winner is called, once
    counted(result, server)


def test_code_answers_are_counted_by_what_they_print_in_the_sandbox(bwrap_sandbox):
    incident = {"error_type": "NameError", "message": "name 'valuez' is not defined", "content_kind": "python",
                "content": "values = [1, 3]\nprint(sum(values) // len(valuez))\n"}
    programs = ["```python\nprint(2)\n```", "```python\nvalues = [1, 3]\nprint(sum(values) // len(values))\n```",
                "```python\nx = 4 // 2  # same output, different code\nprint(x)\n```"]
    script = by_layer(refine=[answer("```python\nprint(undefined)\n```")], vote=[answer(p) for p in programs])
    with loopback_openai(script) as server:
        result = recover(incident, model=loopback_model(server), sandbox=bwrap_sandbox, checkpointer=None,
                         settings=settings())
    vote = voted(result)
    assert (vote.verdict, vote.validator) == ("recovered", "sandbox")
    assert [(row["answer"], row["votes"]) for row in vote.evidence["table"]] == [("exit 0\n2", 3)]
    assert result.value.strip() in [p.removeprefix("```python\n").removesuffix("```").strip() for p in programs]
    counted(result, server)
