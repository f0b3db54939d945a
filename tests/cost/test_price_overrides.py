"""Prices for models the map lacks: lmi.set_model_prices and config["prices"], checked end to end."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import pytest

import lmi
from lmi import LiteLLMModel
from lmi.cost import clear_model_prices, price_usage, usage_cost
from lmi.types import TokenUsage
from tests.cost.variants import body, price_map, serve_variant
from tests.replay import ReplayServer

USAGE = TokenUsage(prompt_tokens=1_000, completion_tokens=200, cache_read_tokens=400, reasoning_tokens=50)


@pytest.fixture(autouse=True)
def no_overrides() -> Iterator[None]:
    clear_model_prices()
    yield
    clear_model_prices()


def _name() -> str:
    return f"my-finetune-{uuid.uuid4().hex[:8]}"


def test_set_model_prices_prices_an_unknown_model() -> None:
    model = _name()
    with pytest.warns(UserWarning, match=model):
        assert not price_usage(model, USAGE).priced
    lmi.set_model_prices(model, input_per_token=2e-6, output_per_token=8e-6)
    bill = price_usage(model, USAGE)
    assert bill.priced
    # cache reads at the input rate and reasoning at the output rate when not given
    assert bill.usd == pytest.approx(1_000 * 2e-6 + 200 * 8e-6, abs=1e-15)


def test_override_wins_over_the_map_and_names_resolve_through_it() -> None:
    lmi.set_model_prices("gpt-4o-mini", input_per_token=1.0, output_per_token=0.0, cache_read_per_token=0.5)
    assert usage_cost("gpt-4o-mini", USAGE) == 600 * 1.0 + 400 * 0.5
    assert usage_cost("openai/gpt-4o-mini", USAGE) == 600 * 1.0 + 400 * 0.5
    clear_model_prices("gpt-4o-mini")
    entry = price_map()["gpt-4o-mini"]
    assert usage_cost("gpt-4o-mini", USAGE) == pytest.approx(
        600 * entry["input_cost_per_token"]
        + 400 * entry["cache_read_input_token_cost"]
        + 200 * entry["output_cost_per_token"],
        abs=1e-15,
    )


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"input_per_token": -1e-6, "output_per_token": 1e-6}, "input_per_token"),
        ({"input_per_token": 1e-6, "output_per_token": math.nan}, "output_per_token"),
        (
            {"input_per_token": 1e-6, "output_per_token": 1e-6, "cache_read_per_token": -0.1},
            "cache_read_per_token",
        ),
        ({"input_per_token": math.inf, "output_per_token": 1e-6}, "input_per_token"),
        ({"input_per_token": "cheap", "output_per_token": 1e-6}, "input_per_token"),
        ({"input_per_token": 1e-6, "output_per_token": 1e-6, "web_search_per_request": -1}, "web_search"),
    ],
)
def test_bad_prices_raise_value_error_naming_them(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        lmi.set_model_prices(_name(), **kwargs)


def test_bad_config_prices_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"prices.*output_per_token"):
        LiteLLMModel(name=_name(), config={"prices": {"input_per_token": 1e-6, "output_per_token": -2.0}})
    with pytest.raises(ValueError, match=r"prices.*unknown rate.*input_price"):
        LiteLLMModel(name=_name(), config={"prices": {"input_price": 1e-6, "output_per_token": 1e-6}})


async def test_config_prices_price_the_calls_of_a_local_model(replay: ReplayServer) -> None:
    name = _name()
    recording = "openai-chat-0b8092"
    served = serve_variant(replay, recording, lambda r: r.update(model=name))
    rates = {"input_per_token": 3e-6, "output_per_token": 7e-6}
    llm = LiteLLMModel(
        name=name,
        config={"model": f"openai/{name}", "api_base": replay.openai_base(served), "prices": rates},
    )
    result = await llm.call_single("Please tell me a story")
    usage = body(recording)["usage"]
    assert result.priced
    assert result.cost == pytest.approx(
        usage["prompt_tokens"] * 3e-6 + usage["completion_tokens"] * 7e-6, abs=1e-15
    )
    sent = replay.requests_for(served)[0].body
    assert "prices" not in sent  # ours, never sent to the provider


def test_batch_work_on_a_priced_model_is_half_price() -> None:
    from lmi.cost.batch_pricing import batch_usage_cost

    model = _name()
    lmi.set_model_prices(model, input_per_token=2e-6, output_per_token=8e-6, audio_output_per_token=4e-5)
    usage = TokenUsage(prompt_tokens=1_000, completion_tokens=200)
    assert batch_usage_cost(model, usage) == pytest.approx((1_000 * 2e-6 + 200 * 8e-6) / 2, abs=1e-15)
    with_audio = TokenUsage(prompt_tokens=1_000, completion_tokens=200, audio_completion_tokens=50)
    expected = (1_000 * 2e-6 + 150 * 8e-6 + 50 * 4e-5) / 2
    assert batch_usage_cost(model, with_audio) == pytest.approx(expected, abs=1e-15)


async def test_prices_set_for_a_bare_name_win_over_the_model_the_response_names(replay: ReplayServer) -> None:
    name = _name()
    lmi.set_model_prices(name, input_per_token=1e-3, output_per_token=2e-3)
    recording = "openai-chat-0b8092"  # the response says gpt-4o-mini-2024-07-18, which the map prices
    llm = LiteLLMModel(
        name=name, config={"model": f"openai/{name}", "api_base": replay.openai_base(recording)}
    )
    result = await llm.call_single("Please tell me a story")
    usage = body(recording)["usage"]
    assert result.cost == pytest.approx(usage["prompt_tokens"] * 1e-3 + usage["completion_tokens"] * 2e-3)
