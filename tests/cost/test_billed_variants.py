"""Every way providers bill, priced from the response as served, end to end through LiteLLMModel.

Each test serves a variant of a real recording with one billing field changed (in a few, also the model
the response names, to reach a model whose price exists) and computes the expected cost here, from
litellm's bundled price map JSON and the recorded usage, never from the library's pricing code.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aviary.core import Tool

from lmi import GLOBAL_COST_TRACKER, LLMResult, MalformedResponseError, cost_tracking_ctx
from lmi.rate_limiter import GLOBAL_LIMITER
from tests.cost.variants import body, price_map, serve_variant
from tests.llms.helpers import anthropic_model, openai_model
from tests.replay import ReplayServer

TOLERANCE = 1e-12
SONNET = "claude-sonnet-4-5-20250929"


def anthropic_cost(entry: dict[str, Any], usage: dict[str, Any], write_rate_key: str) -> float:
    return (
        usage["input_tokens"] * entry["input_cost_per_token"]
        + usage.get("cache_read_input_tokens", 0) * entry["cache_read_input_token_cost"]
        + usage.get("cache_creation_input_tokens", 0) * entry[write_rate_key]
        + usage["output_tokens"] * entry["output_cost_per_token"]
    )


def openai_cost(entry: dict[str, Any], usage: dict[str, Any], suffix: str = "") -> float:
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return (
        (usage["prompt_tokens"] - cached) * entry["input_cost_per_token" + suffix]
        + cached * entry["cache_read_input_token_cost" + suffix]
        + usage["completion_tokens"] * entry["output_cost_per_token" + suffix]
    )


async def tracked_call(llm: Any, *args: Any, **kwargs: Any) -> tuple[LLMResult, float]:
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd
    with cost_tracking_ctx():
        result = await llm.call_single(*args, **kwargs)
    return result, GLOBAL_COST_TRACKER.lifetime_cost_usd - before


# -- 2. Anthropic 1-hour cache writes ------------------------------------------------------------------------


async def test_one_hour_cache_writes_priced_at_their_rate(replay: ReplayServer) -> None:
    recording = "anthropic-messages-cache-218dab"

    def one_hour(response: dict[str, Any]) -> None:
        written = response["usage"]["cache_creation_input_tokens"]
        response["usage"]["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": written,
        }

    served = serve_variant(replay, recording, one_hour)
    result, tracked = await tracked_call(anthropic_model(replay, served, SONNET, max_tokens=64), "hi")

    expected = anthropic_cost(
        price_map()[SONNET], body(recording)["usage"], "cache_creation_input_token_cost_above_1hr"
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert expected == pytest.approx(0.012159, abs=TOLERANCE)  # the bill the issue quotes
    assert tracked == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.priced


async def test_mixed_five_minute_and_one_hour_writes(replay: ReplayServer) -> None:
    recording = "anthropic-messages-cache-218dab"
    usage = body(recording)["usage"]
    one_hour = 500

    def split(response: dict[str, Any]) -> None:
        written = response["usage"]["cache_creation_input_tokens"]
        response["usage"]["cache_creation"] = {
            "ephemeral_5m_input_tokens": written - one_hour,
            "ephemeral_1h_input_tokens": one_hour,
        }

    served = serve_variant(replay, recording, split)
    result, _ = await tracked_call(anthropic_model(replay, served, SONNET, max_tokens=64), "hi")

    entry = price_map()[SONNET]
    expected = anthropic_cost(entry, usage, "cache_creation_input_token_cost") + one_hour * (
        entry["cache_creation_input_token_cost_above_1hr"] - entry["cache_creation_input_token_cost"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)


# -- 3. OpenAI service tiers ---------------------------------------------------------------------------------


async def test_priority_tier_priced_at_priority_rates(replay: ReplayServer) -> None:
    recording = "openai-chat-101ddc"
    served = serve_variant(replay, recording, lambda r: r.update(service_tier="priority"))
    result, tracked = await tracked_call(openai_model(replay, served, model="gpt-4o"), "hi")

    response = body(recording)
    expected = openai_cost(price_map()[response["model"]], response["usage"], "_priority")
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert expected == pytest.approx(0.0056568, abs=1e-7)  # the bill the issue quotes
    assert tracked == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.priced


async def test_flex_tier_priced_at_flex_rates_reasoning_included(replay: ReplayServer) -> None:
    recording = "openai-chat-reasoning-4b12ec"
    served = serve_variant(replay, recording, lambda r: r.update(service_tier="flex"))
    result, _ = await tracked_call(openai_model(replay, served, model="gpt-5"), "hi")

    response = body(recording)
    entry = price_map()[response["model"]]
    expected = openai_cost(entry, response["usage"], "_flex")
    assert response["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.cost == pytest.approx(openai_cost(entry, response["usage"]) / 2, abs=TOLERANCE)


async def test_streamed_priority_tier(replay: ReplayServer) -> None:
    recording = "openai-chat-stream-b11903"
    served = serve_variant(replay, recording, lambda event: event.update(service_tier="priority"))
    llm = openai_model(replay, served, model="gpt-4o")
    result, _ = await tracked_call(llm, "hi", callbacks=[lambda _: None])

    events = [e for e in _events(recording) if e.get("usage")]
    usage, model = events[-1]["usage"], events[-1]["model"]
    assert result.cost == pytest.approx(
        openai_cost(price_map()[model], usage, "_priority"), abs=TOLERANCE, rel=0
    )
    assert not result.usage_estimated


async def test_tier_the_map_does_not_price_is_flagged(replay: ReplayServer) -> None:
    recording = "anthropic-messages-cache-218dab"
    served = serve_variant(replay, recording, lambda r: r["usage"].update(service_tier="priority"))
    result, _ = await tracked_call(anthropic_model(replay, served, SONNET, max_tokens=64), "hi")

    expected = anthropic_cost(
        price_map()[SONNET], body(recording)["usage"], "cache_creation_input_token_cost"
    )
    assert not result.priced
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)  # the standard rate: a lower bound
    assert GLOBAL_COST_TRACKER.unpriced_calls() == {result.model: 1}


# -- 4. Audio tokens and server-side web searches ------------------------------------------------------------


async def test_audio_output_tokens_priced_at_audio_rate(replay: ReplayServer) -> None:
    recording = "openai-chat-887c4f"
    audio = 40

    def audio_answer(response: dict[str, Any]) -> None:  # the model the response names, and its audio
        response["model"] = "gpt-audio"
        response["usage"]["completion_tokens_details"]["audio_tokens"] = audio

    served = serve_variant(replay, recording, audio_answer)
    result, _ = await tracked_call(openai_model(replay, served, model="gpt-audio"), "hi")

    usage, entry = body(recording)["usage"], price_map()["gpt-audio"]
    expected = (
        usage["prompt_tokens"] * entry["input_cost_per_token"]
        + (usage["completion_tokens"] - audio) * entry["output_cost_per_token"]
        + audio * entry["output_cost_per_audio_token"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.priced


async def test_audio_input_tokens_priced_at_audio_rate(replay: ReplayServer) -> None:
    recording = "openai-chat-887c4f"
    audio = 7

    def audio_prompt(response: dict[str, Any]) -> None:
        response["model"] = "gpt-audio"
        response["usage"]["prompt_tokens_details"]["audio_tokens"] = audio

    served = serve_variant(replay, recording, audio_prompt)
    result, _ = await tracked_call(openai_model(replay, served, model="gpt-audio"), "hi")

    usage, entry = body(recording)["usage"], price_map()["gpt-audio"]
    expected = (
        (usage["prompt_tokens"] - audio) * entry["input_cost_per_token"]
        + audio * entry["input_cost_per_audio_token"]
        + usage["completion_tokens"] * entry["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)


async def test_audio_on_a_model_without_audio_prices_is_flagged(replay: ReplayServer) -> None:
    recording = "openai-chat-887c4f"
    served = serve_variant(
        replay, recording, lambda r: r["usage"]["completion_tokens_details"].update(audio_tokens=20)
    )
    result, _ = await tracked_call(openai_model(replay, served), "hi")
    assert not result.priced
    assert "audio_output_per_token" not in price_map()[body(recording)["model"]]
    assert "!" in GLOBAL_COST_TRACKER.report()


async def test_web_searches_charged_per_search(replay: ReplayServer) -> None:
    recording = "anthropic-messages-cache-218dab"
    searches = 2
    served = serve_variant(
        replay, recording, lambda r: r["usage"].update(server_tool_use={"web_search_requests": searches})
    )
    result, tracked = await tracked_call(anthropic_model(replay, served, SONNET, max_tokens=64), "hi")

    entry = price_map()[SONNET]
    per_search = entry["search_context_cost_per_query"]["search_context_size_medium"]
    expected = anthropic_cost(entry, body(recording)["usage"], "cache_creation_input_token_cost")
    expected += searches * per_search
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert expected == pytest.approx(0.0276545, abs=TOLERANCE)  # the bill the issue quotes
    assert tracked == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.priced


async def test_web_searches_without_a_price_are_flagged(replay: ReplayServer) -> None:
    recording = "anthropic-messages-29fd16"
    model = body(recording)["model"]
    assert "search_context_cost_per_query" not in price_map()[model]
    served = serve_variant(
        replay, recording, lambda r: r["usage"].update(server_tool_use={"web_search_requests": 1})
    )
    result, _ = await tracked_call(anthropic_model(replay, served, model, max_tokens=56), "hi")
    assert not result.priced


# -- long-context tiers and unknown models -------------------------------------------------------------------


async def test_long_prompt_on_flex_uses_the_long_context_flex_rates(replay: ReplayServer) -> None:
    recording = "openai-chat-101ddc"
    prompt_tokens, model = 300_000, "gpt-5.4"

    def long_flex(response: dict[str, Any]) -> None:
        response.update(model=model, service_tier="flex")
        response["usage"]["prompt_tokens"] = prompt_tokens

    served = serve_variant(replay, recording, long_flex)
    result, _ = await tracked_call(openai_model(replay, served, model=model), "hi")

    usage, entry = body(recording)["usage"], price_map()[model]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    expected = (
        (prompt_tokens - cached) * entry["input_cost_per_token_above_272k_tokens_flex"]
        + cached * entry["cache_read_input_token_cost_above_272k_tokens_flex"]
        + usage["completion_tokens"] * entry["output_cost_per_token_above_272k_tokens_flex"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)


async def test_one_hour_writes_in_a_long_context_tier(replay: ReplayServer) -> None:
    recording = "anthropic-messages-cache-218dab"
    model, input_tokens = "claude-haiku-5-5", 150_000
    entry = price_map()[model]
    if "cache_creation_input_token_cost_above_1hr_above_100k_tokens" not in entry:
        pytest.skip("this price map has no long-context 1h write price")

    def long_one_hour(response: dict[str, Any]) -> None:
        written = response["usage"]["cache_creation_input_tokens"]
        response["model"] = model
        response["usage"].update(input_tokens=input_tokens)
        response["usage"]["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": written,
        }

    served = serve_variant(replay, recording, long_one_hour)
    result, _ = await tracked_call(anthropic_model(replay, served, model, max_tokens=64), "hi")

    usage = body(recording)["usage"]
    expected = (
        input_tokens * entry["input_cost_per_token_above_100k_tokens"]
        + usage["cache_creation_input_tokens"]
        * entry["cache_creation_input_token_cost_above_1hr_above_100k_tokens"]
        + usage["output_tokens"] * entry["output_cost_per_token_above_100k_tokens"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)


async def test_unknown_model_is_unpriced_never_silently_free(replay: ReplayServer) -> None:
    name = f"local-{uuid.uuid4().hex[:6]}"
    served = serve_variant(replay, "openai-chat-0b8092", lambda r: r.update(model=name))
    with pytest.warns(UserWarning, match=name):
        result, _ = await tracked_call(openai_model(replay, served, model=f"openai/{name}"), "hi")
    assert not result.priced
    assert result.cost == 0.0
    assert GLOBAL_COST_TRACKER.unpriced_calls() == {f"openai/{name}": 1}
    assert f"openai/{name} 1" in GLOBAL_COST_TRACKER.report()


# -- 1. no usage in the response -----------------------------------------------------------------------------


async def test_response_without_usage_is_estimated_and_flagged(replay: ReplayServer) -> None:
    recording = "openai-chat-0b8092"
    served = serve_variant(replay, recording, lambda r: r.pop("usage"))
    result, tracked = await tracked_call(openai_model(replay, served), "Please tell me a story")

    billed, entry = body(recording)["usage"], price_map()[body(recording)["model"]]
    assert result.usage_estimated
    assert result.prompt_count == pytest.approx(billed["prompt_tokens"], abs=3)
    assert result.completion_count == billed["completion_tokens"]
    expected = (
        result.prompt_count * entry["input_cost_per_token"]
        + result.completion_count * entry["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.cost > 0
    assert tracked == pytest.approx(expected, abs=TOLERANCE, rel=0)


async def test_stream_without_usage_is_estimated_and_flagged(replay: ReplayServer) -> None:
    recording = "openai-chat-stream-29f559"
    billed = next(e["usage"] for e in _events(recording) if e.get("usage"))
    served = serve_variant(replay, recording, lambda event: event.update(usage=None))
    result, _ = await tracked_call(openai_model(replay, served), "Say hello", callbacks=[lambda _: None])

    entry = price_map()[_events(recording)[0]["model"]]
    assert result.usage_estimated
    assert result.completion_count == pytest.approx(billed["completion_tokens"], abs=2)
    expected = (
        result.prompt_count * entry["input_cost_per_token"]
        + result.completion_count * entry["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.cost > 0


# -- 5. a billed response that fails to parse ----------------------------------------------------------------


def double(x: int) -> int:
    """Double a number.

    Args:
        x: The number.
    """
    return 2 * x


async def test_unparseable_tool_call_is_billed_and_carried_by_the_error(replay: ReplayServer) -> None:
    recording = "openai-chat-tools-3055a4"

    def truncate(response: dict[str, Any]) -> None:
        call = response["choices"][0]["message"]["tool_calls"][0]["function"]
        call["arguments"] = call["arguments"][:-2]

    served = serve_variant(replay, recording, truncate)
    name = f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"
    llm = openai_model(replay, served, model="gpt-4o-mini")
    llm = type(llm)(
        name=name,
        config={
            "model_list": [
                {"model_name": name, "litellm_params": llm.config["model_list"][0]["litellm_params"]}
            ],
            "rate_limit": {name: "1000000/minute"},
        },
    )
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd
    with cost_tracking_ctx(), pytest.raises(MalformedResponseError) as caught:
        await llm.call_single("What is double of 8?", tools=[Tool.from_function(double)])

    response = body(recording)
    expected = openai_cost(price_map()[response["model"]], response["usage"])
    assert len(replay.requests_for(served)) == 1  # not retried: the answer was paid for
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - before == pytest.approx(expected, abs=TOLERANCE, rel=0)
    result = caught.value.result
    assert isinstance(result, LLMResult)
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.messages is None
    assert result.finish_reason == "tool_calls"
    status = await GLOBAL_LIMITER.rate_limit_status()
    assert status["client", name]["n_items_in_period"] == response["usage"]["total_tokens"]


def _events(recording: str) -> list[dict[str, Any]]:
    import json

    from tests.replay import load_recording

    stream = load_recording(recording)[0]["response"]
    return [
        json.loads(line[len("data:") :])
        for line in stream.splitlines()
        if line.startswith("data:") and line.strip() != "data: [DONE]"
    ]


async def test_streamed_one_hour_cache_writes(replay: ReplayServer) -> None:
    recording = "anthropic-messages-stream-cache-237cb0"

    def one_hour(event: dict[str, Any]) -> None:
        if event.get("type") == "message_start":
            usage = event["message"]["usage"]
            written = usage["cache_creation_input_tokens"]
            usage["cache_creation"] = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": written}

    served = serve_variant(replay, recording, one_hour)
    llm = anthropic_model(replay, served, SONNET, max_tokens=64)
    result, _ = await tracked_call(llm, "hi", callbacks=[lambda _: None])

    usage: dict[str, Any] = {}
    for event in _events(recording):
        if event.get("type") == "message_start":
            usage.update(event["message"]["usage"])
        elif event.get("type") == "message_delta":
            usage.update(event["usage"])
    expected = anthropic_cost(price_map()[SONNET], usage, "cache_creation_input_token_cost_above_1hr")
    assert result.cost == pytest.approx(expected, abs=TOLERANCE, rel=0)
    assert result.priced


# -- 6. n >= 3: the results' costs add up to the bill exactly ------------------------------------------------


async def test_three_choices_sum_exactly_to_the_bill(replay: ReplayServer) -> None:
    recording = "openai-chat-n2-c3b9dc"

    def three_choices(response: dict[str, Any]) -> None:
        third = dict(response["choices"][1], index=2)
        response["choices"].append(third)
        # One more completion token (the third "Good!"... in spirit): 5 tokens make a bill whose thirds,
        # split naively (cost / 3 each, the remainder on the first), add up to 6.300000000000001e-06.
        response["usage"]["completion_tokens"] = 5

    served = serve_variant(replay, recording, three_choices)
    llm = openai_model(replay, served)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 0.0
    with cost_tracking_ctx():
        results = await llm.call("Hello, how are you?", n=3)

    response = body(recording)
    usage = {**response["usage"], "completion_tokens": 5}
    bill = GLOBAL_COST_TRACKER.lifetime_cost_usd  # 0.0 + the call's cost: the bill, unrounded
    assert len(results) == 3
    assert sum(r.cost for r in results) == bill  # exactly, in sum()'s own order
    assert bill == pytest.approx(openai_cost(price_map()[response["model"]], usage), abs=TOLERANCE, rel=0)
    assert sum(r.prompt_count for r in results) == usage["prompt_tokens"]
    assert sum(r.completion_count for r in results) == usage["completion_tokens"]
