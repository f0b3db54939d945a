"""Building results when the provider reports no usage: counted with a tokenizer, flagged as estimated."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aviary.core import Message, Tool
from hypothesis import given, settings
from hypothesis import strategies as st

from lmi.cost import usage_cost
from lmi.llms.results import Choice, Completion, StreamAssembler, build_results, estimate_usage
from tests.llms.helpers import openai_model, recorded, sse_events
from tests.replay import Fault, ReplayServer


def test_estimate_is_close_to_the_billed_count() -> None:
    exchange = recorded("openai-chat-634cf7")
    usage = exchange["body"]["usage"]
    prompt = [Message(role=m["role"], content=m["content"]) for m in exchange["request"]["messages"]]
    choices = [Choice(text=c["message"]["content"]) for c in exchange["body"]["choices"]]

    estimate = estimate_usage(prompt, choices)

    assert estimate.estimated
    assert estimate.prompt_tokens == pytest.approx(usage["prompt_tokens"], abs=3)
    assert estimate.completion_tokens == pytest.approx(usage["completion_tokens"], abs=2)


def test_results_without_usage_are_estimated_and_priced() -> None:
    exchange = recorded("openai-chat-0b8092")
    text = exchange["body"]["choices"][0]["message"]["content"]
    prompt = [Message(content=exchange["request"]["messages"][0]["content"])]
    completion = Completion(choices=[Choice(text=text, finish_reason="length")], usage=None)

    (result,), usage, cost = build_results(
        completion,
        name="gpt-4o-mini",
        requested_model="gpt-4o-mini",
        prompt=prompt,
        started=0.0,
        finished=1.0,
    )

    assert result.usage_estimated
    assert usage.estimated
    assert result.prompt_count == usage.prompt_tokens > 0
    assert result.completion_count == usage.completion_tokens == 3  # "In a small"
    assert result.cost == cost == usage_cost("gpt-4o-mini", usage) > 0


# -- against the loopback server: choice order, the index, the first token -------------------------------

N2 = "openai-chat-n2-37a609"  # two choices, numbered 0 and 1
TOOLS_N2 = "openai-chat-tools-n2-1a141e"  # two choices, each a tool call
STREAM = "openai-chat-stream-29f559"  # "Say hello", streamed in 13 events


def _reversed_choices(body: str) -> str:
    response = json.loads(body)
    response["choices"].reverse()  # indices kept: the server sends 1 before 0
    return json.dumps(response)


@pytest.mark.parametrize("transport", ["native", "litellm"])
@pytest.mark.parametrize("recording", [N2, TOOLS_N2])
async def test_choices_sent_out_of_order_come_back_in_index_order(
    replay: ReplayServer, recording: str, transport: str
) -> None:
    exchange = recorded(recording)
    replay.inject(recording, Fault(rewrite=_reversed_choices))
    request = exchange["request"]
    llm = openai_model(replay, recording, transport=transport)
    results = await llm.call(request["messages"], n=2, tools=_tools(request), tool_choice=None)
    by_index = {choice["index"]: choice["message"] for choice in exchange["body"]["choices"]}
    assert [result.index for result in results] == [0, 1]
    (sent,) = replay.requests_for(recording)
    assert set(sent.body) <= set(request)  # nothing of ours (total_timeout, logger_fn) was sent
    for result in results:
        message = by_index[result.index]
        if message.get("tool_calls"):
            sent = [json.loads(call["function"]["arguments"]) for call in message["tool_calls"]]
            assert [call.function.arguments for call in result.messages[0].tool_calls] == sent
        else:
            assert result.text == message["content"]


def _two_choices_sent_1_then_0(body: str) -> str:
    """The recorded stream as n=2: each event carries choice 1 (the recording) before choice 0 (its text
    upper-cased)."""
    events = _events(body)
    for event in events:
        second = json.loads(json.dumps(event["choices"]))
        for choice in second:
            choice["index"] = 0
            if choice["delta"].get("content"):
                choice["delta"]["content"] = choice["delta"]["content"].upper()
        for choice in event["choices"]:
            choice["index"] = 1
        event["choices"] += second
    return _sse(events)


async def test_streamed_choices_come_back_in_index_order(replay: ReplayServer) -> None:
    replay.inject(STREAM, Fault(rewrite=_two_choices_sent_1_then_0))
    llm = openai_model(replay, STREAM)
    results = [result async for result in llm.acompletion_iter([Message(content="Say hello")], n=2)]
    assert [(result.index, result.text) for result in results] == [
        (0, _streamed_text().upper()),
        (1, _streamed_text()),
    ]


def _tools(request: dict[str, Any]) -> list[Tool] | None:
    """The recorded request's tools, as aviary Tools, so the same tools are sent again."""
    return [Tool.model_validate(spec) for spec in request["tools"]] if request.get("tools") else None


def _events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: {")]


def _sse(events: list[dict[str, Any]]) -> str:
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"


def _text_as(kind: str) -> Callable[[str], str]:
    """The recorded stream with its text deltas carried as a tool call's arguments, or as reasoning."""

    def rewrite(body: str) -> str:
        events = _events(body)
        pieces = [c["delta"]["content"] for e in events for c in e["choices"] if c["delta"].get("content")]
        arguments = json.dumps({"text": "".join(pieces)})
        cuts = [round(len(arguments) * i / len(pieces)) for i in range(len(pieces) + 1)]
        position = 0
        for event in events:
            for choice in event["choices"]:
                content = choice["delta"].pop("content", None)
                if kind == "tool call" and content:
                    piece = arguments[cuts[position] : cuts[position + 1]]
                    call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                    if position == 0:
                        call.update(id="call_1", type="function")
                        call["function"]["name"] = "say"
                    choice["delta"]["tool_calls"] = [call]
                elif kind == "reasoning" and content:
                    choice["delta"]["reasoning_content"] = content
                position += bool(content)
        return _sse(events)

    return rewrite


@pytest.mark.parametrize("transport", ["native", "litellm"])
@pytest.mark.parametrize("kind", ["tool call", "reasoning"])
async def test_the_first_token_is_the_first_delta_of_anything(
    replay: ReplayServer, kind: str, transport: str
) -> None:
    llm = openai_model(replay, STREAM, transport=transport)
    await llm.call_single("Say hello", callbacks=[lambda _: None])  # litellm's first stream: a second of CPU
    # The role-only event comes at once, the first delta 0.1 s later, the last ~1.2 s later.
    replay.inject(STREAM, Fault(rewrite=_text_as(kind), event_delay=0.1))
    deltas: list[str] = []
    result = await llm.call_single("Say hello", callbacks=[deltas.append])
    assert deltas == []  # no text reached the callbacks ...
    if kind == "tool call":
        assert result.messages[0].tool_calls[0].function.arguments == {"text": _streamed_text()}
    else:
        assert result.reasoning_content == _streamed_text()
    # ... yet the first token was when the first delta arrived, well before the last one
    assert 0.05 <= result.seconds_to_first_token < 0.6
    assert result.seconds_to_last_token - result.seconds_to_first_token >= 0.7


def _streamed_text() -> str:
    events = sse_events(recorded(STREAM))
    return "".join(choice["delta"].get("content") or "" for event in events for choice in event["choices"])


# -- properties: any order the provider sends choices in, and any index list ------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_any_interleaving_of_streamed_choices_assembles_in_index_order(data: st.DataObject) -> None:
    # The recorded stream's text deltas, as n choices whose chunks arrive in any interleaving.
    events = _events(recorded(STREAM)["response"])
    pieces = [c["delta"]["content"] for e in events for c in e["choices"] if c["delta"].get("content")]
    n = data.draw(st.integers(min_value=1, max_value=4), label="n")
    indices = data.draw(st.permutations(range(n)), label="first chunk order")
    queues = {index: [f"{index}:{piece}" for piece in pieces] for index in indices}
    assembler = StreamAssembler()
    while any(queues.values()):
        index = data.draw(st.sampled_from([i for i, q in queues.items() if q]))
        chunk = {"id": "c", "choices": [{"index": index, "delta": {"content": queues[index].pop(0)}}]}
        assembler.add(chunk)
    choices = assembler.finish().choices
    assert [choice.index for choice in choices] == list(range(n))
    assert [choice.text for choice in choices] == ["".join(f"{i}:{p}" for p in pieces) for i in range(n)]
