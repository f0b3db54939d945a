"""The helpers fhlmi code imports from lmi.llms, on litellm objects built from real recorded responses."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from aviary.core import Message
from pydantic import BaseModel, TypeAdapter

from lmi import CommonLLMNames, JSONSchemaValidationError, LLMResult
from lmi.llms import (
    estimate_message_tokens,
    extract_top_logprobs,
    parse_cached_usage,
    rate_limited,
    request_limited,
    sum_logprobs,
    validate_json_completion,
)
from tests.llms.helpers import recorded


class Person(BaseModel):
    name: str
    age: int


def _response(name: str, **choice_changes: Any) -> litellm.ModelResponse:
    body = recorded(name)["body"]
    for choice in body["choices"]:
        choice["message"].update(choice_changes)
    return litellm.ModelResponse(**body)


def test_common_llm_names() -> None:
    assert CommonLLMNames.GPT_4O == "gpt-4o-2024-11-20"
    assert CommonLLMNames.OPENAI_TEST.value == "gpt-4o-mini-2024-07-18"
    assert CommonLLMNames.OPENAI_BASELINE is CommonLLMNames.GPT_4O
    assert CommonLLMNames.ANTHROPIC_TEST.name == "CLAUDE_45_HAIKU"
    names = [member.name for member in CommonLLMNames]
    assert "OPENAI_BASELINE" not in names
    assert len(names) == 13


def test_logprobs_of_a_recorded_choice() -> None:
    body = recorded("openai-chat-8d5ffb")["body"]
    tokens = body["choices"][0]["logprobs"]["content"]
    choice = litellm.ModelResponse(**body).choices[0]
    assert sum_logprobs(choice) == pytest.approx(sum(token["logprob"] for token in tokens))
    assert sum_logprobs([-1.0, -0.5]) == -1.5
    assert sum_logprobs([]) == 0
    assert sum_logprobs("not a choice") is None
    top = extract_top_logprobs(choice)
    assert top == [[(alt["token"], alt["logprob"]) for alt in token["top_logprobs"]] for token in tokens]
    plain = _response("openai-chat-634cf7").choices[0]
    assert sum_logprobs(plain) is None
    assert extract_top_logprobs(plain) is None


def test_validate_json_completion_unwraps_fences_in_place() -> None:
    body = recorded("openai-chat-json-object-n2-3ffede")["body"]
    answer = body["choices"][0]["message"]["content"]
    fenced = _response(
        "openai-chat-json-object-n2-3ffede", content=f"Here you go:\n```json\n{answer}\n```\nDone."
    )
    validate_json_completion(fenced, Person)
    assert [json.loads(c.message.content) for c in fenced.choices] == [json.loads(answer)] * 2
    validate_json_completion(_response("openai-chat-json-object-n2-3ffede"), TypeAdapter(Person))
    with pytest.raises(JSONSchemaValidationError):
        validate_json_completion(
            _response("openai-chat-json-object-n2-3ffede", content='{"name": "x"}'), Person
        )
    schema = Person.model_json_schema()
    validate_json_completion(_response("openai-chat-json-object-n2-3ffede"), schema)
    with pytest.raises(litellm.JSONSchemaValidationError):
        validate_json_completion(_response("openai-chat-json-object-n2-3ffede", content="[1]"), schema)


def test_parse_cached_usage() -> None:
    body = recorded("openai-chat-634cf7")["body"]
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 7}
    response = litellm.ModelResponse(**body)
    assert parse_cached_usage(response.usage)[0] == 7
    assert parse_cached_usage(None) == (None, None)


def test_estimate_message_tokens_counts_like_litellm() -> None:
    messages = [Message(role="system", content="Be brief."), Message(content="What is 2+2?")]
    dicts = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    assert estimate_message_tokens(messages, "gpt-4o") == litellm.token_counter(
        model="gpt-4o", messages=dicts
    )


class Limited:
    def __init__(self) -> None:
        self.charged: list[Any] = []

    async def check_rate_limit(self, tokens: float) -> None:
        self.charged.append(("tokens", tokens))

    async def check_request_limit(self) -> None:
        self.charged.append(("request", 1))

    @request_limited
    @rate_limited
    async def complete(self, messages: list[Message]) -> list[LLMResult]:
        return [LLMResult(model="m", text="ok", completion_count=5)]

    @rate_limited
    async def stream(self, messages: list[Message]) -> Any:
        yield LLMResult(model="m", text="a", completion_count=3)


class Unlimited:
    @rate_limited
    async def complete(self, messages: list[Message]) -> list[LLMResult]:
        return []


async def test_limit_decorators_charge_requests_and_tokens() -> None:
    limited = Limited()
    await limited.complete([Message(content="x" * 40)])
    assert limited.charged == [("request", 1), ("tokens", 10), ("tokens", 5)]
    limited.charged.clear()
    assert [r.text async for r in limited.stream([Message(content="y" * 8)])] == ["a"]
    assert limited.charged == [("tokens", 2), ("tokens", 3)]
    with pytest.raises(NotImplementedError, match="check_rate_limit"):
        await Unlimited().complete([Message(content="x")])
