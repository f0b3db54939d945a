"""usage_cost prices every recorded exchange exactly as the provider bills it."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from lmi._lazy import litellm
from lmi.cost import (
    UnknownModelPriceWarning,
    clear_price_cache,
    model_prices,
    price_entry,
    usage_cost,
)
from lmi.types import TokenUsage
from tests.cost.recorded import RecordedCall, recorded_calls

CALLS = recorded_calls()
TOLERANCE = 1e-12


@pytest.fixture(autouse=True)
def fresh_prices() -> Iterator[None]:
    clear_price_cache()
    yield
    clear_price_cache()


def price_map() -> dict[str, Any]:
    cost_map: dict[str, Any] = litellm().model_cost
    return cost_map


def expected_cost(entry: dict[str, Any], usage: TokenUsage) -> float:
    """The provider's bill, by hand: each kind of token times its own published price."""
    input_price = entry["input_cost_per_token"]
    output_price = entry.get("output_cost_per_token", 0.0)
    cache_read_price = entry.get("cache_read_input_token_cost", input_price)
    cache_write_price = entry.get("cache_creation_input_token_cost", input_price)
    uncached = usage.prompt_tokens - usage.cache_read_tokens - usage.cache_creation_tokens
    return (
        uncached * input_price
        + usage.cache_read_tokens * cache_read_price
        + usage.cache_creation_tokens * cache_write_price
        + usage.completion_tokens * output_price
    )


def test_every_kind_of_recording_is_priced() -> None:
    names = {call.recording for call in CALLS}
    for kind in (
        "openai-chat-",
        "openai-chat-stream-",
        "-n2-",
        "openai-chat-tools-",
        "openai-chat-json-",
        "openai-chat-reasoning-",
        "anthropic-messages-cache-",
        "anthropic-messages-stream-",
        "anthropic-messages-stream-cache-",
        "anthropic-messages-reasoning-",
        "openai-embeddings-",
        "openai-responses-",
        "openai-legacy-completions-",
    ):
        assert any(kind in name for name in names), kind
    # The recordings exercise each billing rule: cache reads, cache writes, reasoning tokens.
    assert any(c.usage.cache_read_tokens and c.path.endswith("/chat/completions") for c in CALLS)
    assert any(c.usage.cache_read_tokens and c.path.endswith("/messages") for c in CALLS)
    assert any(c.usage.cache_creation_tokens for c in CALLS)
    assert any(c.usage.reasoning_tokens for c in CALLS)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.id)
def test_recorded_usage_priced_exactly(call: RecordedCall) -> None:
    entry = price_map()[call.request_model]
    # None of these prompts reaches a long-context tier, and no model here prices reasoning apart.
    assert "output_cost_per_reasoning_token" not in entry
    for key in entry:
        if match := re.fullmatch(r"input_cost_per_token_above_(\d+)k_tokens", key):
            assert call.usage.prompt_tokens <= int(match[1]) * 1000
    assert usage_cost(call.request_model, call.usage) == pytest.approx(
        expected_cost(entry, call.usage), abs=TOLERANCE, rel=0
    )


@pytest.mark.parametrize("call", [c for c in CALLS if c.response_model in price_map()], ids=lambda c: c.id)
def test_response_model_name_priced_like_request(call: RecordedCall) -> None:
    assert call.response_model is not None
    assert usage_cost(call.response_model, call.usage) == pytest.approx(
        expected_cost(price_map()[call.response_model], call.usage), abs=TOLERANCE, rel=0
    )


@pytest.mark.parametrize(
    ("prefix", "call"),
    [
        ("anthropic/" if c.path.endswith("/messages") else "openai/", c)
        for c in {c.request_model: c for c in CALLS}.values()
    ],
    ids=lambda value: value.id if isinstance(value, RecordedCall) else value,
)
def test_provider_prefixed_name_priced_like_bare_name(prefix: str, call: RecordedCall) -> None:
    prefixed = prefix + call.request_model
    assert usage_cost(prefixed, call.usage) == pytest.approx(
        expected_cost(price_map()[call.request_model], call.usage), abs=TOLERANCE, rel=0
    )


def test_reasoning_tokens_billed_as_output_not_dropped() -> None:
    call = next(c for c in CALLS if c.usage.reasoning_tokens)
    without_reasoning = TokenUsage(
        prompt_tokens=call.usage.prompt_tokens,
        completion_tokens=call.usage.completion_tokens - call.usage.reasoning_tokens,
    )
    output_price = price_map()[call.request_model]["output_cost_per_token"]
    model = call.request_model
    difference = usage_cost(model, call.usage) - usage_cost(model, without_reasoning)
    assert difference == pytest.approx(call.usage.reasoning_tokens * output_price, abs=TOLERANCE, rel=0)


def test_reasoning_priced_apart_when_the_map_says_so() -> None:
    model = next(
        (
            name
            for name, entry in price_map().items()
            if entry.get("output_cost_per_reasoning_token") not in (None, entry.get("output_cost_per_token"))
            and "input_cost_per_token" in entry
            and not any("_above_" in key for key in entry)
            and "tiered_pricing" not in entry
        ),
        None,
    )
    if model is None:
        pytest.skip("no model in this litellm's map prices reasoning apart")
    entry = price_map()[model]
    usage = TokenUsage(prompt_tokens=100, completion_tokens=50, reasoning_tokens=30)
    expected = (
        100 * entry["input_cost_per_token"]
        + 20 * entry["output_cost_per_token"]
        + 30 * entry["output_cost_per_reasoning_token"]
    )
    assert usage_cost(model, usage) == pytest.approx(expected, abs=TOLERANCE, rel=0)


def _model_with_tier(threshold_key: str) -> str | None:
    for name, entry in price_map().items():
        priced = "input_cost_per_token" in entry and "output_cost_per_token" in entry
        if threshold_key in entry and priced and entry.get("litellm_provider") != "xai":
            return name
    return None


@pytest.mark.parametrize("threshold", [128_000, 200_000])
def test_long_prompts_billed_at_the_higher_tier(threshold: int) -> None:
    suffix = f"_above_{threshold // 1000}k_tokens"
    model = _model_with_tier(f"input_cost_per_token{suffix}")
    if model is None:
        pytest.skip(f"no model with a {threshold} token tier")
    entry = price_map()[model]
    below = TokenUsage(prompt_tokens=threshold, completion_tokens=1_000)
    above = TokenUsage(prompt_tokens=threshold + 1, completion_tokens=1_000)
    assert usage_cost(model, below) == pytest.approx(expected_cost(entry, below), abs=TOLERANCE, rel=0)
    tier_input = entry[f"input_cost_per_token{suffix}"]
    tier_output = entry.get(f"output_cost_per_token{suffix}", entry["output_cost_per_token"])
    expected_above = (threshold + 1) * tier_input + 1_000 * tier_output
    assert usage_cost(model, above) == pytest.approx(expected_above, abs=TOLERANCE, rel=0)


def test_tier_applies_to_cached_tokens_too() -> None:
    model = _model_with_tier("cache_read_input_token_cost_above_200k_tokens")
    if model is None:
        pytest.skip("no model with a tiered cache-read price")
    entry = price_map()[model]
    usage = TokenUsage(prompt_tokens=250_000, completion_tokens=10, cache_read_tokens=200_000)
    expected = (
        50_000 * entry["input_cost_per_token_above_200k_tokens"]
        + 200_000 * entry["cache_read_input_token_cost_above_200k_tokens"]
        + 10 * entry.get("output_cost_per_token_above_200k_tokens", entry["output_cost_per_token"])
    )
    assert usage_cost(model, usage) == pytest.approx(expected, abs=TOLERANCE, rel=0)


def test_inclusive_threshold_provider_bills_tier_at_threshold() -> None:
    model = next(
        (
            name
            for name, entry in price_map().items()
            if entry.get("litellm_provider") == "xai"
            and any(re.fullmatch(r"input_cost_per_token_above_\d+k_tokens", key) for key in entry)
        ),
        None,
    )
    if model is None:
        pytest.skip("no tiered xAI model in this map")
    entry = price_map()[model]
    key = next(k for k in entry if re.fullmatch(r"input_cost_per_token_above_\d+k_tokens", k))
    threshold = int(re.findall(r"\d+", key)[0]) * 1000
    usage = TokenUsage(prompt_tokens=threshold)
    assert usage_cost(model, usage) == pytest.approx(threshold * entry[key], abs=TOLERANCE, rel=0)


def test_tiered_pricing_table() -> None:
    model = next(
        (
            name
            for name, entry in price_map().items()
            if isinstance(entry.get("tiered_pricing"), list) and len(entry["tiered_pricing"]) > 1
        ),
        None,
    )
    if model is None:
        pytest.skip("no model with a tiered_pricing table")
    tiers = price_map()[model]["tiered_pricing"]
    for tier in tiers:
        prompt = int(float(tier["range"][0])) + 1
        usage = TokenUsage(prompt_tokens=prompt, completion_tokens=7)
        output = tier.get("output_cost_per_token", price_map()[model].get("output_cost_per_token", 0.0))
        expected = prompt * tier["input_cost_per_token"] + 7 * output
        assert usage_cost(model, usage) == pytest.approx(expected, abs=TOLERANCE, rel=0), tier


def test_unknown_model_costs_zero_with_one_warning() -> None:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        costs = [usage_cost("no-such-model-xyz", usage) for _ in range(5)]
        costs.append(usage_cost("another-missing-model", usage))
    assert costs == [0.0] * 6
    messages = [str(w.message) for w in caught if issubclass(w.category, UnknownModelPriceWarning)]
    assert len(messages) == 2
    assert "no-such-model-xyz" in messages[0]
    assert "another-missing-model" in messages[1]


def test_probing_an_unknown_name_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert price_entry("babbage:2023-07-21-v2") is None
        assert model_prices("babbage:2023-07-21-v2") is None


def test_documentation_entry_is_not_a_model() -> None:
    with pytest.warns(UnknownModelPriceWarning):
        assert usage_cost("sample_spec", TokenUsage(prompt_tokens=1_000)) == 0.0


def test_malformed_price_entry_never_raises() -> None:
    price_map()["lmi-test-broken-model"] = {"input_cost_per_token": "not a number"}
    try:
        with pytest.warns(UnknownModelPriceWarning):
            assert usage_cost("lmi-test-broken-model", TokenUsage(prompt_tokens=5)) == 0.0
    finally:
        del price_map()["lmi-test-broken-model"]


def test_prices_resolved_once_per_name() -> None:
    assert model_prices("gpt-4o-mini-2024-07-18") is model_prices("gpt-4o-mini-2024-07-18")
    entry = price_entry("openai/gpt-4o-mini-2024-07-18")
    assert entry is price_map()["gpt-4o-mini-2024-07-18"]


def test_bare_name_found_under_a_provider_prefix() -> None:
    cost_map = price_map()
    for provider in ("anthropic", "openai", "gemini"):
        bare = next(
            (
                key.split("/", 1)[1]
                for key, entry in cost_map.items()
                if key.startswith(f"{provider}/")
                and key.count("/") == 1
                and key.split("/", 1)[1] not in cost_map
                and "input_cost_per_token" in entry
            ),
            None,
        )
        if bare is not None:
            break
    else:
        pytest.skip("every prefixed entry also exists bare")
    prices = model_prices(bare)
    assert prices is not None
    assert prices.key == f"{provider}/{bare}"


def test_cache_cleared_after_map_changes() -> None:
    usage = TokenUsage(prompt_tokens=1_000, completion_tokens=100)
    with pytest.warns(UnknownModelPriceWarning):
        assert usage_cost("lmi-test-registered-model", usage) == 0.0
    price_map()["lmi-test-registered-model"] = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    try:
        clear_price_cache()
        assert usage_cost("lmi-test-registered-model", usage) == pytest.approx(1e-3 + 2e-4, abs=TOLERANCE)
    finally:
        del price_map()["lmi-test-registered-model"]
