"""LLMResult's fields as fhlmi code reads and builds them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import pytest
from aviary.core import Message
from pydantic import ValidationError

from lmi import LLMResult
from tests.llms.helpers import openai_model, recorded
from tests.replay import ReplayServer


def test_defaults_and_types() -> None:
    result = LLMResult(model="m", unknown_field="ignored")
    assert isinstance(result.id, UUID)
    assert (result.name, result.config, result.prompt, result.text, result.messages) == (None,) * 5
    assert (result.logprob, result.top_logprobs, result.reasoning_content, result.finish_reason) == (
        None,
    ) * 4
    assert result.response_id is None
    assert (result.seconds_to_first_token, result.seconds_to_last_token, result.cost) == (0.0, 0.0, 0.0)
    assert str(result) == ""
    assert isinstance(datetime.fromisoformat(result.date), datetime)
    assert not hasattr(result, "unknown_field")
    with pytest.raises(ValidationError):
        LLMResult()  # type: ignore[call-arg]  # model is required


def test_frozen_and_non_negative_fields() -> None:
    result = LLMResult(model="m", cost=0.5, cache_read_tokens=3)
    for field, value in (("cost", 1.0), ("cache_read_tokens", 4), ("cache_creation_tokens", 1)):
        with pytest.raises(ValidationError):
            setattr(result, field, value)
    for field in ("cost", "prompt_count", "completion_count", "seconds_to_first_token"):
        with pytest.raises(ValidationError):
            LLMResult(model="m", **{field: -1})
    result.name = "renamed"  # not frozen
    assert result.name == "renamed"


def test_provider_helpers() -> None:
    result = LLMResult(model="claude-haiku-4-5-20251001")
    assert result.provider == "anthropic"
    params = LLMResult(model="gpt-4o").get_supported_openai_params()
    assert params is not None
    assert "logprobs" in params


async def test_top_logprobs_from_a_recorded_call(replay: ReplayServer) -> None:
    name = "openai-chat-8d5ffb"
    tokens = recorded(name, 1)["body"]["choices"][0]["logprobs"]["content"]  # the exchange sent with n=1
    llm = openai_model(replay, name, temperature=0, max_tokens=56, logprobs=True, top_logprobs=5)
    result = await llm.call_single(
        [Message(role="system", content="Respond with single words."),
         Message(content="What is the meaning of the universe?")]
    )  # fmt: skip
    assert result.top_logprobs == [[(a["token"], a["logprob"]) for a in t["top_logprobs"]] for t in tokens]
    assert result.logprob == pytest.approx(sum(t["logprob"] for t in tokens))
    assert result.response_id is None  # chat completions have no Responses API id
