"""LiteLLMModel through the global limiter: tokens settled to the bill, one request per call, per model."""

from __future__ import annotations

import time
import uuid

from aviary.core import Message

from lmi import LiteLLMModel
from lmi.rate_limiter import GLOBAL_LIMITER
from tests.llms.helpers import recorded
from tests.replay import ReplayServer

SINGLE_WORDS = Message(role="system", content="Respond with single words.")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _used(namespace: str, key: str) -> int:
    return (await GLOBAL_LIMITER.rate_limit_status())[(namespace, key)]["n_items_in_period"]


def _model(replay: ReplayServer, recording: str, name: str, **config: object) -> LiteLLMModel:
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base(recording)}
    return LiteLLMModel(
        name=name,
        config={"model_list": [{"model_name": name, "litellm_params": params}], **config},
    )


async def test_token_limit_settles_to_billed_tokens(replay: ReplayServer) -> None:
    usage = recorded("openai-chat-634cf7")["body"]["usage"]
    name = _unique("tokens")
    llm = _model(replay, "openai-chat-634cf7", name, rate_limit={name: "100000/minute"})

    await llm.call_single([SINGLE_WORDS, Message(content="What is the meaning of the universe?")])
    assert await _used("client", name) == usage["prompt_tokens"] + usage["completion_tokens"]

    await llm.call_single([SINGLE_WORDS, Message(content="What is the meaning of the universe?")])
    assert await _used("client", name) == 2 * (usage["prompt_tokens"] + usage["completion_tokens"])


async def test_n2_charges_the_bill_once(replay: ReplayServer) -> None:
    usage = recorded("openai-chat-n2-c3b9dc")["body"]["usage"]
    name = _unique("n2")
    llm = _model(replay, "openai-chat-n2-c3b9dc", name, rate_limit={name: "100000/minute"})
    results = await llm.call([SINGLE_WORDS, Message(content="Hello, how are you?")], n=2)
    assert len(results) == 2
    assert await _used("client", name) == usage["total_tokens"]


async def test_request_limit_counts_calls_and_makes_them_wait(replay: ReplayServer) -> None:
    name = _unique("requests")
    llm = _model(replay, "openai-chat-634cf7", name, request_limit={name: "2 per 1 second"})
    question = [SINGLE_WORDS, Message(content="What is the meaning of the universe?")]
    started = time.monotonic()
    for _ in range(3):
        await llm.call_single(question)
    assert time.monotonic() - started >= 0.9  # the third call waited for the window to move
    assert ("client", name) not in await GLOBAL_LIMITER.rate_limit_status()  # no token limit set
    assert await _used("client|request", name) >= 1


async def test_limits_follow_the_model_actually_used(replay: ReplayServer) -> None:
    primary, fallback = _unique("primary"), _unique("fallback")
    usage = recorded("mixed-chat-d72d1e", 1)["body"]["usage"]
    config = {
        "model_list": [
            {
                "model_name": primary,
                "litellm_params": {
                    "model": "gpt-4o-mini",
                    "api_base": replay.openai_base("mixed-chat-d72d1e"),
                },
            },
            {
                "model_name": fallback,
                "litellm_params": {
                    "model": "claude-haiku-4-5-20251001",
                    "api_base": replay.anthropic_base("mixed-chat-d72d1e"),
                    "max_tokens": 56,
                },
            },
        ],
        "fallbacks": [{primary: [fallback]}],
        "rate_limit": {primary: "100000/minute", fallback: "100000/minute"},
        "request_limit": {primary: "100/minute", fallback: "100/minute"},
    }
    llm = LiteLLMModel(name=primary, config=config)

    result = await llm.call_single([SINGLE_WORDS, Message(content="What is the meaning of the universe?")])

    assert result.model == fallback
    assert await _used("client|request", primary) == 1  # the 401 was a real request
    assert await _used("client|request", fallback) == 1
    assert await _used("client", primary) == 0  # nothing was billed: the estimate was released
    assert await _used("client", fallback) == usage["input_tokens"] + usage["output_tokens"]
