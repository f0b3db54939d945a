"""Every chat call is priced from the provider's billed usage, end to end through LiteLLMModel.

Expected costs are computed here, independently, from the raw recorded usage and litellm's local price
map; the tracker must move by exactly the sum of the results' costs.
"""

from __future__ import annotations

import asyncio
import json

import litellm
import pytest
from aviary.core import Message

from lmi import GLOBAL_COST_TRACKER, cost_tracking_ctx
from tests.llms.helpers import anthropic_model, openai_model, recorded, sse_events

PRICES = litellm.model_cost


def openai_cost(model: str, usage: dict) -> float:
    price = PRICES[model]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return (
        (usage["prompt_tokens"] - cached) * price["input_cost_per_token"]
        + cached * price.get("cache_read_input_token_cost", price["input_cost_per_token"])
        + usage["completion_tokens"] * price["output_cost_per_token"]
    )


def anthropic_cost(model: str, usage: dict) -> float:
    price = PRICES[model]
    return (
        usage["input_tokens"] * price["input_cost_per_token"]
        + usage.get("cache_read_input_tokens", 0) * price["cache_read_input_token_cost"]
        + usage.get("cache_creation_input_tokens", 0) * price["cache_creation_input_token_cost"]
        + usage["output_tokens"] * price["output_cost_per_token"]
    )


def _messages(request: dict) -> list[Message]:
    messages = [Message(role="system", content=s["text"]) for s in request.get("system", [])]
    for m in request["messages"]:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        messages.append(Message(role=m["role"], content=content))
    return messages


OPENAI_CASES = [
    ("openai-chat-0b8092", "gpt-4o-mini", {"max_tokens": 3}),
    ("openai-chat-n2-c3b9dc", "gpt-4o-mini", {"n": 2, "temperature": 1.0}),
    ("openai-chat-101ddc", "gpt-4o", {"temperature": 0}),  # a long prompt with cached tokens
    ("openai-chat-reasoning-4b12ec", "gpt-5", {"reasoning_effort": "high"}),
    ("openai-chat-tools-n2-1a141e", "gpt-3.5-turbo", {"n": 2}),
]


@pytest.mark.parametrize(("recording", "model", "params"), OPENAI_CASES)
async def test_openai_cost_matches_bill(replay, recording: str, model: str, params: dict) -> None:
    exchange = recorded(recording)
    expected = openai_cost(exchange["body"]["model"], exchange["body"]["usage"])
    llm = openai_model(replay, recording, model=model)
    kwargs = dict(params)
    if "tools" in exchange["request"]:
        from aviary.core import Tool

        def play(move: int | None) -> None:
            """Play one turn by choosing a move.

            Args:
                move: Choose an integer to lose, choose None to win.
            """

        kwargs["tools"] = [Tool.from_function(play)]
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd
    with cost_tracking_ctx():
        results = await llm.call(_messages(exchange["request"]), **kwargs)
    assert sum(r.cost for r in results) == pytest.approx(expected, abs=1e-12)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - before == pytest.approx(expected, abs=1e-12)
    assert expected > 0


async def test_cached_prompt_tokens_priced_at_cache_rate(replay) -> None:
    exchange = recorded("openai-chat-101ddc", 1)
    usage = exchange["body"]["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    if not cached:
        pytest.skip("recording has no cached tokens")
    llm = openai_model(replay, "openai-chat-101ddc", model="gpt-4o")
    await llm.call_single(_messages(exchange["request"]), temperature=0)  # exchange 0
    result = await llm.call_single(_messages(exchange["request"]), temperature=0)  # exchange 1
    assert result.cache_read_tokens == cached
    assert result.cost == pytest.approx(openai_cost(exchange["body"]["model"], usage), abs=1e-12)


async def test_openai_stream_cost_uses_streamed_usage(replay) -> None:
    exchange = recorded("openai-chat-stream-29f559")
    events = sse_events(exchange)
    usage = next(e["usage"] for e in events if e.get("usage"))
    llm = openai_model(replay, "openai-chat-stream-29f559")
    result = await llm.call_single("Say hello", callbacks=[lambda _: None], temperature=1.0)
    assert result.cost == pytest.approx(openai_cost(events[0]["model"], usage), abs=1e-12)
    assert not result.usage_estimated


ANTHROPIC_CASES = [
    ("anthropic-messages-29fd16", 0, "claude-haiku-4-5-20251001", {"max_tokens": 56, "temperature": 1.0}),
    (
        "anthropic-messages-cache-cb1e1e",
        0,
        "claude-sonnet-4-5-20250929",
        {"max_tokens": 64000, "temperature": 0},
    ),
    (
        "anthropic-messages-cache-1feb77",
        1,
        "claude-sonnet-4-5-20250929",
        {"max_tokens": 64000, "temperature": 0},
    ),
    ("anthropic-messages-reasoning-771f20", 0, "claude-sonnet-4-5-20250929", {"max_tokens": 8192}),
]


@pytest.mark.parametrize(("recording", "index", "model", "params"), ANTHROPIC_CASES)
async def test_anthropic_cost_matches_bill(
    replay, recording: str, index: int, model: str, params: dict
) -> None:
    exchange = recorded(recording, index)
    body = exchange["body"]
    expected = anthropic_cost(body["model"], body["usage"])
    params = {
        **params,
        **({"thinking": exchange["request"]["thinking"]} if "thinking" in exchange["request"] else {}),
    }
    llm = anthropic_model(replay, recording, model, **params)
    result = await llm.call_single(_messages(exchange["request"]))
    assert result.text == "".join(b["text"] for b in body["content"] if b["type"] == "text")
    assert result.cost == pytest.approx(expected, abs=1e-12)
    assert result.cache_read_tokens == body["usage"].get("cache_read_input_tokens", 0)
    assert result.cache_creation_tokens == body["usage"].get("cache_creation_input_tokens", 0)


async def test_anthropic_stream_cache_cost(replay) -> None:
    exchange = recorded("anthropic-messages-stream-cache-237cb0")
    usage: dict = {}
    for line in exchange["response"].splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event["type"] == "message_start":
                usage.update(event["message"]["usage"])
                model = event["message"]["model"]
            elif event["type"] == "message_delta":
                usage.update({k: v for k, v in event["usage"].items() if v is not None})
    llm = anthropic_model(
        replay,
        "anthropic-messages-stream-cache-237cb0",
        "claude-sonnet-4-5-20250929",
        max_tokens=64000,
        temperature=0,
    )
    result = await llm.call_single(_messages(exchange["request"]), callbacks=[lambda _: None])
    assert result.cost == pytest.approx(anthropic_cost(model, usage), abs=1e-12)


async def test_tracking_off_and_on_do_not_leak_between_tasks(replay) -> None:
    body = recorded("openai-chat-0b8092")["body"]
    expected = openai_cost(body["model"], body["usage"])
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=3)

    async def call(enabled: bool) -> None:
        with cost_tracking_ctx(enabled):
            await asyncio.sleep(0)
            await llm.call_single("Please tell me a story")

    before = GLOBAL_COST_TRACKER.lifetime_cost_usd
    await asyncio.gather(*(call(enabled=i % 2 == 0) for i in range(6)))
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - before == pytest.approx(3 * expected, abs=1e-12)
