"""Budgets in one process: refused before sending, settled to the bill, nested, on a model, embeddings.

Costs are checked against the price map JSON and the recorded usage; what was sent, against the loopback
server's log of received requests.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import pytest

from lmi import (
    GLOBAL_COST_TRACKER,
    BudgetExceeded,
    LiteLLMEmbeddingModel,
    LiteLLMModel,
    LMIError,
    cost_tracking_ctx,
)
from tests.cost.variants import body, price_map
from tests.llms.helpers import openai_model
from tests.replay import Fault, ReplayServer

RECORDING = "openai-chat-0b8092"  # gpt-4o-mini, 12 prompt + 3 completion tokens, max_tokens=3
PROMPT = "Please tell me a story"


def call_cost() -> float:
    response = body(RECORDING)
    entry, usage = price_map()[response["model"]], response["usage"]
    return (
        usage["prompt_tokens"] * entry["input_cost_per_token"]
        + usage["completion_tokens"] * entry["output_cost_per_token"]
    )


def model(replay: ReplayServer, **config: Any) -> LiteLLMModel:
    llm = openai_model(replay, RECORDING, max_tokens=3, **config.pop("params", {}))
    return LiteLLMModel(name=llm.name, config={**llm.config, **config})


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "5", None, True])
def test_bad_budget_is_a_value_error_naming_it(bad: Any) -> None:
    if bad is None:
        with pytest.raises(ValueError, match="budget_usd"):
            cost_tracking_ctx(budget_key="team-a")
        return
    with pytest.raises(ValueError, match="budget_usd"):
        cost_tracking_ctx(budget_usd=bad)


@pytest.mark.parametrize("key", ["", "has space", "-leading-dash", "x" * 201, 42, "tab\there"])
def test_bad_budget_key_is_a_value_error_naming_it(key: Any) -> None:
    with pytest.raises(ValueError, match="budget_key"):
        cost_tracking_ctx(budget_usd=1.0, budget_key=key)


def test_bad_config_budget_names_it() -> None:
    with pytest.raises(ValueError, match="budget_usd"):
        LiteLLMModel(name="gpt-4o-mini", config={"budget_usd": -0.5})


async def test_call_that_cannot_fit_is_refused_before_anything_is_sent(replay: ReplayServer) -> None:
    with cost_tracking_ctx(budget_usd=call_cost() / 2) as block, pytest.raises(BudgetExceeded) as caught:
        await model(replay).call_single(PROMPT)
    assert isinstance(caught.value, LMIError)
    assert replay.requests_for(RECORDING) == []
    assert caught.value.needed_usd is not None
    assert caught.value.needed_usd >= call_cost()
    status = await block.status()
    assert (status.spent_usd, status.reserved_usd) == (0.0, 0.0)


async def test_reservation_settles_to_the_real_cost(replay: ReplayServer) -> None:
    with cost_tracking_ctx(budget_usd=1.0) as block:
        result = await model(replay).call_single(PROMPT)
    status = await block.status()
    assert result.cost == pytest.approx(call_cost(), abs=1e-12)
    assert status.spent_usd == pytest.approx(call_cost(), abs=2e-9)  # kept in whole nano-USD, rounded up
    assert status.spent_usd >= result.cost
    assert status.reserved_usd == 0
    assert status.left_usd == pytest.approx(1.0 - status.spent_usd)


async def test_concurrent_calls_stop_at_the_budget_and_use_it(replay: ReplayServer) -> None:
    budget = 30 * call_cost()
    llm = model(replay)
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd

    async def one() -> float | None:
        try:
            return (await llm.call_single(PROMPT)).cost
        except BudgetExceeded:
            return None

    with cost_tracking_ctx(budget_usd=budget):
        costs = await asyncio.gather(*(one() for _ in range(50)))
    billed = [cost for cost in costs if cost is not None]
    assert len(replay.requests_for(RECORDING)) == len(billed)  # refused calls were never sent
    assert sum(billed) <= budget
    assert sum(billed) >= 0.9 * budget
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - before == pytest.approx(sum(billed), abs=1e-12)


async def test_nested_budgets_all_apply(replay: ReplayServer) -> None:
    llm = model(replay)
    with cost_tracking_ctx(budget_usd=10 * call_cost()) as outer:
        with cost_tracking_ctx(budget_usd=3.5 * call_cost()) as inner:
            done, error = await calls_until_refused(llm, 20)
        assert 1 <= done <= 3
        assert isinstance(error, BudgetExceeded)
        inner_status, outer_status = await inner.status(), await outer.status()
        assert outer_status.spent_usd == inner_status.spent_usd > 0
        more, error = await calls_until_refused(llm, 20)  # the outer one still holds after the inner closed
        assert isinstance(error, BudgetExceeded)
        assert done + more <= 10
    assert (await outer.status()).spent_usd <= 10 * call_cost()


async def calls_until_refused(llm: LiteLLMModel, most: int) -> tuple[int, BaseException | None]:
    for done in range(most):
        try:
            await llm.call_single(PROMPT)
        except BudgetExceeded as exc:
            return done, exc
    return most, None


async def test_config_budget_caps_the_models_calls(replay: ReplayServer) -> None:
    llm = model(replay, budget_usd=2.5 * call_cost())
    done, error = await calls_until_refused(llm, 5)
    assert isinstance(error, BudgetExceeded)
    assert 1 <= done == len(replay.requests_for(RECORDING)) <= 2


async def test_a_failed_call_gives_its_reservation_back(replay: ReplayServer) -> None:
    replay.inject(RECORDING, Fault(status=400, body='{"error": {"message": "bad request"}}'))
    llm = model(replay, num_retries=0)
    with cost_tracking_ctx(budget_usd=1.0) as block, pytest.raises(Exception, match="bad request"):
        await llm.call_single(PROMPT)
    status = await block.status()
    assert (status.spent_usd, status.reserved_usd) == (0.0, 0.0)


async def test_unpriced_model_cannot_run_under_a_budget(replay: ReplayServer) -> None:
    name = f"local-{uuid.uuid4().hex[:6]}"
    llm = LiteLLMModel(
        name=name, config={"model": f"openai/{name}", "api_base": replay.openai_base(RECORDING)}
    )
    with cost_tracking_ctx(budget_usd=1.0), pytest.raises(BudgetExceeded, match="no known price"):
        await llm.call_single(PROMPT)
    assert replay.requests_for(RECORDING) == []


async def test_same_key_shares_one_budget_in_process(replay: ReplayServer) -> None:
    key = f"team-{uuid.uuid4().hex[:6]}"
    llm = model(replay)
    with cost_tracking_ctx(budget_usd=1.0, budget_key=key):
        await llm.call_single(PROMPT)
    with cost_tracking_ctx(budget_usd=1.0, budget_key=key) as again:
        await llm.call_single(PROMPT)
        assert (await again.status()).spent_usd == pytest.approx(2 * call_cost(), abs=4e-9)


async def test_embeddings_count_against_the_budget(replay: ReplayServer) -> None:
    recording = "openai-embeddings-65ce54"
    exchange_body = body(recording)
    texts = [exchange_body_input(recording)]
    embedder = LiteLLMEmbeddingModel(
        name="text-embedding-3-small",
        ndim=8,
        config={"kwargs": {"api_base": replay.openai_base(recording)}},
    )
    expected = (
        exchange_body["usage"]["prompt_tokens"]
        * price_map()["text-embedding-3-small"]["input_cost_per_token"]
    )
    with cost_tracking_ctx(budget_usd=1.0) as block:
        await embedder.embed_documents(texts)
    assert (await block.status()).spent_usd == pytest.approx(expected, abs=2e-9)
    with cost_tracking_ctx(budget_usd=expected / 10), pytest.raises(BudgetExceeded):
        await embedder.embed_documents(texts)


def exchange_body_input(recording: str) -> str:
    from tests.replay import load_recording

    sent = load_recording(recording)[0]["request"]["input"]
    return sent[0] if isinstance(sent, list) else sent


async def test_reentered_block_holds_its_budget_once(replay: ReplayServer) -> None:
    block = cost_tracking_ctx(budget_usd=1.0)
    with block, block:
        await model(replay).call_single(PROMPT)
    status = await block.status()
    assert status.spent_usd == pytest.approx(call_cost(), abs=2e-9)
    assert status.reserved_usd == 0


async def test_a_settle_failure_after_the_bill_loses_neither_record_nor_budget(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stalled_redis(*args: Any) -> None:
        raise ConnectionError("the limiter's store did not answer")

    from lmi.rate_limiter.reservation import Reservation

    monkeypatch.setattr(Reservation, "settle", stalled_redis)
    name = f"settle-{uuid.uuid4().hex[:6]}"
    llm = model(replay, num_retries=0)
    llm = LiteLLMModel(
        name=name,
        config={
            "model_list": [
                {"model_name": name, "litellm_params": llm.config["model_list"][0]["litellm_params"]}
            ],
            "rate_limit": {name: "1000000/minute"},
            "num_retries": 0,
        },
    )
    before = GLOBAL_COST_TRACKER.lifetime_cost_usd
    with cost_tracking_ctx(budget_usd=1.0) as block:
        result = await llm.call_single(PROMPT)  # the limiter's trouble is logged: the paid answer returns
    assert result.text
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd - before == pytest.approx(call_cost(), abs=1e-12)
    status = await block.status()
    assert status.spent_usd == pytest.approx(call_cost(), abs=2e-9)
    assert status.reserved_usd == 0
