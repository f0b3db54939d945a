"""Retries, fallbacks, timeouts and the one error that names every model tried."""

from __future__ import annotations

import time

import pytest
from aviary.core import Message

from lmi import LiteLLMModel, ModelCallError
from tests.llms.helpers import recorded
from tests.replay import Fault, ReplayServer

QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]


def _mixed_config(replay: ReplayServer, **router: object) -> dict:
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "gpt-4o-mini",
                    "api_base": replay.openai_base("mixed-chat-d72d1e"),
                },
            },
            {
                "model_name": "claude-haiku",
                "litellm_params": {
                    "model": "claude-haiku-4-5-20251001",
                    "api_base": replay.anthropic_base("mixed-chat-d72d1e"),
                    "max_tokens": 56,
                },
            },
        ],
        "fallbacks": [{"gpt-4o-mini": ["claude-haiku"]}],
        "router_kwargs": {"retry_backoff": 0.01, **router},
    }


async def test_401_falls_back_to_the_next_model(replay: ReplayServer) -> None:
    llm = LiteLLMModel(name="gpt-4o-mini", config=_mixed_config(replay))
    result = await llm.call_single(QUESTION)
    assert result.text == recorded("mixed-chat-d72d1e", 1)["body"]["content"][0]["text"]
    assert result.model == "claude-haiku"
    paths = [r.path for r in replay.requests_for("mixed-chat-d72d1e")]
    assert paths == ["/v1/chat/completions", "/v1/messages"]  # a 401 is not retried


async def test_fallback_while_streaming(replay: ReplayServer) -> None:
    llm = LiteLLMModel(name="gpt-4o-mini", config=_mixed_config(replay))
    deltas: list[str] = []
    result = await llm.call_single(QUESTION, callbacks=[deltas.append])
    assert "".join(deltas) == result.text
    assert result.text
    assert replay.requests_for("mixed-chat-d72d1e")[-1].body["stream"] is True


async def test_error_surviving_everything_names_each_model(replay: ReplayServer) -> None:
    config = _mixed_config(replay, num_retries=1)
    replay.inject("mixed-chat-d72d1e", Fault(status=401, times=1))
    replay.inject(
        "mixed-chat-d72d1e",
        Fault(
            status=503,
            body='{"type":"error","error":{"type":"overloaded_error","message":"Overloaded now"}}',
            times=2,
        ),
    )
    llm = LiteLLMModel(name="gpt-4o-mini", config=config)
    with pytest.raises(ModelCallError) as info:
        await llm.call_single(QUESTION)
    message = str(info.value)
    assert "gpt-4o-mini" in message
    assert "claude-haiku" in message
    assert "Overloaded now" in message
    assert [model for model, _ in info.value.attempts] == ["gpt-4o-mini", "claude-haiku", "claude-haiku"]


async def test_5xx_is_retried_then_succeeds(replay: ReplayServer) -> None:
    replay.inject("openai-chat-634cf7", Fault(status=500, times=2))
    llm = LiteLLMModel(
        config={
            "name": "gpt-4o-mini",
            "api_base": replay.openai_base("openai-chat-634cf7"),
            "retry_backoff": 0.01,
        }
    )
    result = await llm.call_single(QUESTION)
    assert result.text == recorded("openai-chat-634cf7")["body"]["choices"][0]["message"]["content"]
    assert len(replay.requests_for("openai-chat-634cf7")) == 3


async def test_429_retry_after_is_honoured(replay: ReplayServer) -> None:
    replay.inject(
        "openai-chat-634cf7",
        Fault(
            status=429,
            headers={"retry-after": "0.4"},
            body='{"error": {"message": "slow down", "type": "rate_limit"}}',
        ),
    )
    llm = LiteLLMModel(
        config={
            "name": "gpt-4o-mini",
            "api_base": replay.openai_base("openai-chat-634cf7"),
            "retry_backoff": 0.01,
        }
    )
    started = time.perf_counter()
    await llm.call_single(QUESTION)
    assert time.perf_counter() - started >= 0.4
    assert len(replay.requests_for("openai-chat-634cf7")) == 2


async def test_timeout_per_call_is_bounded(replay: ReplayServer) -> None:
    replay.inject("openai-chat-634cf7", Fault(delay=2.0, replay=True, times=None))
    llm = LiteLLMModel(
        config={
            "name": "gpt-4o-mini",
            "api_base": replay.openai_base("openai-chat-634cf7"),
            "timeout": 0.3,
            "num_retries": 1,
            "retry_backoff": 0.01,
        }
    )
    started = time.perf_counter()
    with pytest.raises(ModelCallError, match="gpt-4o-mini"):
        await llm.call_single(QUESTION)
    assert time.perf_counter() - started < 1.5
