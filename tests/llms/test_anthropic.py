"""LiteLLMModel against recorded Anthropic messages exchanges: plain, stream, prompt cache, thinking."""

from __future__ import annotations

import json

from aviary.core import Message

from tests.llms.helpers import anthropic_model, recorded
from tests.replay import ReplayServer

HAIKU = "claude-haiku-4-5-20251001"
SONNET = "claude-sonnet-4-5-20250929"


def _text(body: dict) -> str:
    return "".join(block["text"] for block in body["content"] if block["type"] == "text")


async def test_plain_message(replay: ReplayServer) -> None:
    body = recorded("anthropic-messages-29fd16")["body"]
    llm = anthropic_model(replay, "anthropic-messages-29fd16", HAIKU, temperature=1.0, max_tokens=56)

    result = await llm.call_single("What does 42 mean?")

    assert result.text == _text(body)
    assert result.prompt_count == body["usage"]["input_tokens"]
    assert result.completion_count == body["usage"]["output_tokens"]
    # Anthropic's stop reasons, in OpenAI's terms
    assert result.finish_reason == {"end_turn": "stop", "max_tokens": "length"}[body["stop_reason"]]
    sent = replay.requests_for("anthropic-messages-29fd16")[0]
    assert sent.path == "/v1/messages"
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What does 42 mean?"}]}
    ]
    assert (sent.body["max_tokens"], sent.body["temperature"]) == (56, 1.0)


async def test_stream(replay: ReplayServer) -> None:
    exchange = recorded("anthropic-messages-stream-2a2f99")
    deltas, usage = [], {}
    for line in exchange["response"].splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event["type"] == "content_block_delta":
                deltas.append(event["delta"]["text"])
            if event["type"] in {"message_start", "message_delta"}:
                usage.update(event.get("usage") or event["message"]["usage"])
    replay.stream_delay = 0.002
    llm = anthropic_model(
        replay, "anthropic-messages-stream-2a2f99", HAIKU, temperature=1.0, max_tokens=64000
    )
    received: list[str] = []

    result = await llm.call_single("Say hello", callbacks=[received.append])

    assert received == deltas
    assert result.text == "".join(deltas)
    assert result.prompt_count == usage["input_tokens"]
    assert result.completion_count == usage["output_tokens"]
    assert 0 < result.seconds_to_first_token <= result.seconds_to_last_token


async def test_prompt_cache_counts(replay: ReplayServer) -> None:
    exchange = recorded("anthropic-messages-cache-cb1e1e", 1)
    request, usage = exchange["request"], exchange["body"]["usage"]
    system = request["system"][0]["text"]
    history = [Message(role=m["role"], content=m["content"][0]["text"]) for m in request["messages"]]
    history[-1] = Message(content=history[-1].content, cache_breakpoint=True)
    llm = anthropic_model(replay, "anthropic-messages-cache-cb1e1e", SONNET, temperature=0, max_tokens=64000)

    result = await llm.call_single([Message(role="system", content=system), *history])

    assert result.text == _text(exchange["body"])
    assert result.cache_read_tokens == usage["cache_read_input_tokens"] > 0
    assert result.cache_creation_tokens == usage["cache_creation_input_tokens"] > 0
    expected_prompt = (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert result.prompt_count == expected_prompt
    sent = replay.requests_for("anthropic-messages-cache-cb1e1e")[0].body
    assert sent["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_thinking_becomes_reasoning_content(replay: ReplayServer) -> None:
    exchange = recorded("anthropic-messages-reasoning-07bc62")
    body = exchange["body"]
    thinking = "".join(b["thinking"] for b in body["content"] if b["type"] == "thinking")
    llm = anthropic_model(replay, "anthropic-messages-reasoning-07bc62", SONNET, max_tokens=5120)
    messages = [
        Message(role="system", content=exchange["request"]["system"][0]["text"]),
        Message(content="What is the meaning of life?"),
    ]

    result = await llm.call_single(messages, thinking={"type": "enabled", "budget_tokens": 1024})

    assert result.reasoning_content == thinking
    assert result.text == _text(body)
    assert result.completion_count == body["usage"]["output_tokens"]
    assert replay.requests_for("anthropic-messages-reasoning-07bc62")[0].body["thinking"] == {
        "type": "enabled",
        "budget_tokens": 1024,
    }
