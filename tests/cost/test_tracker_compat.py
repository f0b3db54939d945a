"""fhlmi's cost-tracker API: ``await record(response)``, its settings, and callbacks awaited in order."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest

from lmi import LiteLLMModel
from lmi.cost_tracker import (
    GLOBAL_COST_TRACKER,
    CostTracker,
    cost_tracking_ctx,
    set_reporting_threshold,
    track_costs,
)
from tests.llms.helpers import recorded
from tests.replay import ReplayServer


def _expected_cost(body: dict[str, Any]) -> float:
    """Price of a recorded OpenAI usage, from litellm's price map (not from lmi's pricing)."""
    prices = litellm.model_cost[body["model"]]
    usage = body["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return (
        (usage["prompt_tokens"] - cached) * prices["input_cost_per_token"]
        + cached * prices.get("cache_read_input_token_cost", prices["input_cost_per_token"])
        + usage["completion_tokens"] * prices["output_cost_per_token"]
    )


async def test_record_a_litellm_response() -> None:
    body = recorded("openai-chat-634cf7")["body"]
    tracker = CostTracker()
    seen: list[Any] = []

    async def callback(record: Any) -> None:
        seen.append(record)

    tracker.add_callback(callback)
    with cost_tracking_ctx():
        assert tracker.enabled.get() is True
        await tracker.record(litellm.ModelResponse(**body))
    assert tracker.lifetime_cost_usd == pytest.approx(_expected_cost(body), rel=1e-9)
    (record,) = seen
    assert record.usage.prompt_tokens == body["usage"]["prompt_tokens"]
    assert record.usage.completion_tokens == body["usage"]["completion_tokens"]
    assert record.response.id == body["id"]
    # What fhlmi's callbacks read of the response itself is there too.
    assert record.id == body["id"]
    assert record.choices[0].message.content == body["choices"][0]["message"]["content"]
    # As in fhlmi, record() itself always records: the enabled switch is checked by track_costs.
    with cost_tracking_ctx(False):
        assert tracker.enabled.get() is False
        await tracker.record(litellm.ModelResponse(**body))
    assert len(seen) == 2
    assert tracker.lifetime_cost_usd == pytest.approx(2 * _expected_cost(body), rel=1e-9)


async def test_record_without_usage_is_a_no_op() -> None:
    body = recorded("openai-chat-634cf7")["body"]
    tracker = CostTracker()
    seen: list[Any] = []
    tracker.add_callback(seen.append)
    await tracker.record(litellm.ModelResponse(**{k: v for k, v in body.items() if k != "usage"}))
    assert (tracker.lifetime_cost_usd, seen) == (0.0, [])


async def test_track_costs_records_nothing_while_disabled() -> None:
    body = recorded("openai-chat-634cf7")["body"]
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd

    @track_costs
    async def respond() -> litellm.ModelResponse:
        return litellm.ModelResponse(**body)

    with cost_tracking_ctx(False):
        response = await respond()
    assert response.id == body["id"]
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == before


def test_tracker_settings() -> None:
    tracker = CostTracker()
    assert (tracker.lifetime_cost_usd, tracker.last_report, tracker.report_every_usd) == (0.0, 0.0, 1.0)
    tracker.set_reporting_threshold(0.5)
    assert tracker.report_every_usd == 0.5
    before = GLOBAL_COST_TRACKER.report_every_usd
    set_reporting_threshold(2.0)
    assert GLOBAL_COST_TRACKER.report_every_usd == 2.0
    GLOBAL_COST_TRACKER.report_every_usd = before


async def test_track_costs_records_before_returning() -> None:
    body = recorded("openai-chat-634cf7")["body"]
    tracker_total = GLOBAL_COST_TRACKER.lifetime_cost_usd

    @track_costs
    async def fake_completion() -> litellm.ModelResponse:
        return litellm.ModelResponse(**body)

    with cost_tracking_ctx():
        await fake_completion()
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - tracker_total == pytest.approx(_expected_cost(body))


async def test_callbacks_awaited_in_order_before_call_returns(replay: ReplayServer) -> None:
    order: list[str] = []

    async def slow(record: Any) -> None:
        await asyncio.sleep(0.05)
        order.append(f"slow:{record.model}:{record.usage.prompt_tokens}")

    def sync(record: Any) -> None:
        order.append("sync")

    async def fast(record: Any) -> None:
        order.append("fast")

    for callback in (slow, sync, fast):
        GLOBAL_COST_TRACKER.add_callback(callback)
    body = recorded("openai-chat-634cf7")["body"]
    try:
        llm = LiteLLMModel(name="gpt-4o-mini", config={"api_base": replay.openai_base("openai-chat-634cf7")})
        with cost_tracking_ctx():
            await llm.call_single("What is the meaning of life?")
        assert order == [f"slow:gpt-4o-mini:{body['usage']['prompt_tokens']}", "sync", "fast"]
    finally:
        for callback in (slow, sync, fast):
            GLOBAL_COST_TRACKER.remove_callback(callback)
