"""Building results when the provider reports no usage: counted with a tokenizer, flagged as estimated."""

from __future__ import annotations

import pytest
from aviary.core import Message

from lmi.cost import usage_cost
from lmi.llms.results import Choice, Completion, build_results, estimate_usage
from tests.llms.helpers import recorded


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
