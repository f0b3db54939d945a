"""The OpenAI Responses API (``responses_api=True``), against recorded real exchanges on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aviary.core import Message

from lmi import LiteLLMModel
from tests.llms.helpers import recorded
from tests.replay import Fault, ReplayServer

CHAINED = "openai-responses-965e98"


def _model(replay: ReplayServer, name: str = CHAINED) -> LiteLLMModel:
    return LiteLLMModel(
        llm_config={
            "name": "gpt-4o-mini",
            "api_base": replay.openai_base(name),
            "responses_api": True,
            "temperature": 1.0,
        }
    )


def _output_text(body: dict[str, Any]) -> str:
    return "\n".join(
        part["text"] for item in body["output"] if item["type"] == "message" for part in item["content"]
    )


async def test_a_response_then_a_chained_one(replay: ReplayServer) -> None:
    first_exchange, second_exchange = recorded(CHAINED, 0), recorded(CHAINED, 1)
    llm = _model(replay)
    history = [
        Message(role="system", content="Respond with single words."),
        Message(content="What color is the sky?"),
    ]
    first = await llm.call_single(history)
    assert first.text == _output_text(first_exchange["body"])
    assert first.response_id  # litellm's encoding of the provider's id
    assert first.messages[0].info["response_id"] == first.response_id
    assert (first.logprob, first.finish_reason, first.reasoning_content) == (None, None, None)
    usage = first_exchange["body"]["usage"]
    assert (first.prompt_count, first.completion_count) == (usage["input_tokens"], usage["output_tokens"])
    assert first.cost > 0
    sent = replay.requests_for(CHAINED)[0].body
    assert sent["input"] == first_exchange["request"]["input"]
    assert sent["store"] is True

    second = await llm.call_single([*history, first.messages[0], Message(content="And grass?")])
    sent = replay.requests_for(CHAINED)[1].body
    assert sent["previous_response_id"] == first_exchange["body"]["id"]
    assert sent["input"] == second_exchange["request"]["input"]  # only what came after the stored response
    assert second.text == _output_text(second_exchange["body"])
    assert second.response_id not in (None, first.response_id)


def _sse(body: dict[str, Any]) -> str:
    """The recorded answer as the Responses API streams it: text deltas, then response.completed."""
    text = _output_text(body)
    events = [{"type": "response.created", "response": {**body, "status": "in_progress", "output": []}}]
    events += [{"type": "response.output_text.delta", "delta": piece} for piece in (text[:2], text[2:])]
    events.append({"type": "response.completed", "response": body})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


async def test_streamed_response(replay: ReplayServer) -> None:
    body = recorded(CHAINED, 0)["body"]
    replay.inject(CHAINED, Fault(status=200, body=_sse(body), content_type="text/event-stream"))
    deltas: list[str] = []
    result = await _model(replay).call_single(
        [
            Message(role="system", content="Respond with single words."),
            Message(content="What color is the sky?"),
        ],
        callbacks=[deltas.append],
    )
    assert "".join(deltas) == result.text == _output_text(body)
    assert result.response_id
    usage = body["usage"]
    assert (result.prompt_count, result.completion_count) == (usage["input_tokens"], usage["output_tokens"])
    assert result.seconds_to_first_token > 0
    assert replay.requests_for(CHAINED)[0].body["stream"] is True


async def test_failed_stream_is_an_error(replay: ReplayServer) -> None:
    body = recorded(CHAINED, 0)["body"]
    failed = {**body, "status": "failed", "error": {"code": "server_error", "message": "boom"}}
    events = (
        f"event: response.failed\ndata: {json.dumps({'type': 'response.failed', 'response': failed})}\n\n"
    )
    replay.inject(CHAINED, Fault(status=200, body=events, content_type="text/event-stream"))
    with pytest.raises(RuntimeError, match=r"response\.failed"):
        await _model(replay).call_single("What color is the sky?", callbacks=[print])


async def test_tool_history_and_tools_in_the_responses_shape(replay: ReplayServer) -> None:
    import hashlib

    from aviary.core import Tool, ToolCall, ToolCallFunction, ToolRequestMessage, ToolResponseMessage

    def double(x: int) -> int:
        """Double a number.

        Args:
            x: the number
        """
        return 2 * x

    long_id = "call_" + "x" * 80
    call = ToolCall(id=long_id, function=ToolCallFunction(name="double", arguments={"x": 4}))
    history = [
        Message(content="What is double of 4?"),
        ToolRequestMessage(content="", tool_calls=[call]),
        ToolResponseMessage(content="8", name="double", tool_call_id=long_id),
    ]
    await _model(replay).call(history, tools=[Tool.from_function(double)], tool_choice="auto")
    sent = replay.requests_for(CHAINED)[0].body
    hashed = hashlib.sha256(long_id.encode()).hexdigest()
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "What is double of 4?"},
        {"type": "function_call", "call_id": hashed, "name": "double", "arguments": '{"x": 4}'},
        {"type": "function_call_output", "call_id": hashed, "output": "8"},
    ]
    (tool,) = sent["tools"]
    assert (tool["type"], tool["name"], tool["strict"]) == ("function", "double", False)
    assert tool["parameters"]["properties"]["x"]["type"] == "integer"
    assert sent["tool_choice"] == "auto"
    with pytest.raises(ValueError, match="longer than 64"):
        await _model(replay).call(history[:2])
    assert len(replay.requests_for(CHAINED)) == 1


async def test_empty_tools_keep_the_response_id_on_the_message(replay: ReplayServer) -> None:
    from aviary.core import ToolRequestMessage

    result = await _model(replay, "openai-responses-e7feff").call_single(
        [
            Message(role="system", content="Respond with single words."),
            Message(content="What color is the sky?"),
        ],
        tools=[],
    )
    (message,) = result.messages
    assert isinstance(message, ToolRequestMessage)
    assert message.tool_calls == []
    assert message.info["response_id"] == result.response_id
