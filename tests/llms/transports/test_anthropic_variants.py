"""Anthropic requests and answers no recording holds (tools, images, tool results, tool-call streams),
made by changing one part of a real recording in Anthropic's own format, through both transports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aviary.core import Message, ToolCall, ToolCallFunction, ToolRequestMessage, ToolResponseMessage

from lmi import LiteLLMModel
from tests.llms.helpers import recorded
from tests.llms.transports.differential import comparable
from tests.replay import Fault, ReplayServer, load_recording

HAIKU = "claude-haiku-4-5-20251001"
PLAIN, STREAM = "anthropic-messages-29fd16", "anthropic-messages-stream-2a2f99"
TOOLS = recorded("openai-chat-tools-3055a4")["request"]["tools"]
IMAGE = recorded("openai-chat-n2-image-7491e6")["request"]["messages"][0]["content"]


def _conversation() -> list[Message]:
    call = ToolCall(id="toolu_01A", function=ToolCallFunction(name="double", arguments={"x": 8}))
    return [
        Message(role="system", content="Use the tools.", cache_breakpoint=True),
        Message(content=IMAGE),
        Message(role="assistant", content="Doubling."),
        Message(content="Now double 8."),
        ToolRequestMessage(content=None, tool_calls=[call]),
        ToolResponseMessage(content="16", name="double", tool_call_id="toolu_01A"),
        Message(content="And again?"),
    ]


def _tool_use_body() -> str:
    body = recorded(PLAIN)["body"]
    body["content"].append({"type": "tool_use", "id": "toolu_01B", "name": "double", "input": {"x": 16}})
    body["stop_reason"] = "tool_use"
    return json.dumps(body)


def _tool_use_stream() -> str:
    """The recorded stream with a tool_use block streamed after its text block."""
    stream = load_recording(STREAM)[0]["response"]
    pieces = ['{"x"', ": 1", "6}"]
    block = [
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_01C", "name": "double", "input": {}}},
        *({"type": "content_block_delta", "index": 1,
           "delta": {"type": "input_json_delta", "partial_json": piece}} for piece in pieces),
        {"type": "content_block_stop", "index": 1},
    ]  # fmt: skip
    events = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in block)
    stream = stream.replace("event: message_delta", events + "event: message_delta", 1)
    return stream.replace('"stop_reason":"end_turn"', '"stop_reason":"tool_use"')


async def _both(
    replay: ReplayServer, name: str, body: str, content_type: str, **kwargs: Any
) -> list[tuple[list[dict[str, Any]], list[str], Any]]:
    outcomes = []
    for transport in ("litellm", "native"):
        replay.clear()
        replay.inject(name, Fault(status=200, body=body, content_type=content_type))
        params = {"model": f"anthropic/{HAIKU}", "api_base": replay.anthropic_base(name), "max_tokens": 256}
        llm = LiteLLMModel(
            name=HAIKU,
            config={"model_list": [{"model_name": HAIKU, "litellm_params": params}], "transport": transport},
        )
        deltas: list[str] = []
        if content_type.startswith("text/event-stream"):
            results = [r async for r in llm.acompletion_iter(_conversation(), [deltas.append], **kwargs)]
        else:
            results = await llm.acompletion(_conversation(), **kwargs)
        (received,) = replay.requests_for(name)
        outcomes.append(
            ([comparable(r) | {"provider_response_id": None} for r in results], deltas, received.body)
        )
    return outcomes


async def test_tools_images_and_tool_results_are_sent_and_read_alike(replay: ReplayServer) -> None:
    (ref, _, ref_body), (got, _, got_body) = await _both(
        replay, PLAIN, _tool_use_body(), "application/json", tools=TOOLS, tool_choice="required"
    )
    assert got == ref
    assert got[0]["finish_reason"] == "tool_calls"
    assert json.loads(got[0]["messages"][0]["tool_calls"][0]["function"]["arguments"]) == {"x": 16}
    assert got_body == ref_body
    assert got_body["tool_choice"] == {"type": "any"}
    assert got_body["messages"][0]["content"][0]["type"] == "image"


async def test_a_streamed_tool_call_is_assembled_alike(replay: ReplayServer) -> None:
    (ref, ref_deltas, ref_body), (got, got_deltas, got_body) = await _both(
        replay,
        STREAM,
        _tool_use_stream(),
        "text/event-stream; charset=utf-8",
        tools=TOOLS,
        tool_choice="auto",
    )
    assert got == ref
    assert got_deltas == ref_deltas == ["Hello! ", "👋 How can I help you today?"]
    assert json.loads(got[0]["messages"][0]["tool_calls"][0]["function"]["arguments"]) == {"x": 16}
    assert got_body == ref_body


def _thinking_stream() -> str:
    """The recorded stream with a thinking block (as extended thinking streams it) before its text."""
    stream = load_recording(STREAM)[0]["response"]
    thinking = ["The user greets me. ", "A short greeting back fits."]
    block = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}}
          for t in thinking),
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "c2ln"}},
        {"type": "content_block_stop", "index": 0},
    ]  # fmt: skip
    events = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in block)
    stream = stream.replace('"index":0', '"index":1').replace('"index": 0', '"index": 1')
    return stream.replace("event: content_block_start", events + "event: content_block_start", 1)


async def test_a_streamed_thinking_block_becomes_the_same_reasoning(replay: ReplayServer) -> None:
    (ref, ref_deltas, ref_body), (got, got_deltas, got_body) = await _both(
        replay, STREAM, _thinking_stream(), "text/event-stream; charset=utf-8",
        thinking={"type": "enabled", "budget_tokens": 1024},
    )  # fmt: skip
    assert got == ref
    assert got[0]["reasoning_content"] == "The user greets me. A short greeting back fits."
    assert 0 < got[0]["reasoning_tokens"] <= got[0]["completion_count"]
    assert got_deltas == ref_deltas == ["Hello! ", "👋 How can I help you today?"]
    assert got_body == ref_body
    assert got_body["tools"][0]["name"] == "dummy_tool"  # tool calls in the history, no tools given


A, B = {"role": "user", "content": "a"}, {"role": "user", "content": "b"}
SHAPES: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "two user turns merge": ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {}),
    "assistant first": ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "b"}], {}),
    "sampling and stop": ([A], {"temperature": 0.5, "top_p": 0.9, "stop": "END"}),
    "stop list, top_k, user": ([A], {"stop": ["x", "y"], "top_k": 5, "user": "u1"}),
    "max_completion_tokens": ([{"role": "user", "content": "a"}], {"max_completion_tokens": 77}),
    "named tool": ([{"role": "user", "content": "a"}], {"tools": TOOLS, "tool_choice": "double"}),
    "no parallel tools": ([{"role": "user", "content": "a"}], {"tools": TOOLS, "parallel_tool_calls": False}),
    "tool choice none": ([{"role": "user", "content": "a"}], {"tools": TOOLS, "tool_choice": "none"}),
    "image by URL": (
        [{"role": "user", "content": [{"type": "text", "text": "what"},
                                      {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}],
        {},
    ),
    # Shapes litellm rewrites: "auto" leaves them to it.
    "empty assistant text": ([A, {"role": "assistant", "content": ""}, B], {}),
    "system message mid-conversation": ([A, {"role": "system", "content": "S"}, B], {}),
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_auto_sends_the_body_litellm_sends(replay: ReplayServer, shape: str) -> None:
    messages, kwargs = SHAPES[shape]
    if kwargs.get("tool_choice") == "double":
        kwargs = {**kwargs, "tool_choice": {"type": "function", "function": {"name": "double"}}}
    bodies = []
    for transport in ("litellm", "auto"):
        replay.clear()
        replay.inject(PLAIN, Fault(status=200, body=_plain_body()))
        params = {"model": f"anthropic/{HAIKU}", "api_base": replay.anthropic_base(PLAIN)}
        config = {"model_list": [{"model_name": HAIKU, "litellm_params": params}], "transport": transport}
        await LiteLLMModel(name=HAIKU, config=config).acompletion([Message(**m) for m in messages], **kwargs)
        bodies.append(replay.requests_for(PLAIN)[0].body)
    assert bodies[1] == bodies[0]
    if not kwargs.get("max_completion_tokens"):
        assert bodies[1]["max_tokens"] > 4096  # the model's own output limit, read from the model map


def _plain_body() -> str:
    return json.dumps(recorded(PLAIN)["body"])
