"""call_batch through OpenAI's Batch API (loopback server answering from real recordings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmi import BatchItemError, LiteLLMModel
from lmi.cost import GLOBAL_COST_TRACKER, cost_tracking_ctx
from lmi.llms.transports.session import session_for
from tests.batch.conftest import price_map_entry
from tests.batch.servers import BatchServer
from tests.reliability.sockets import client_sockets_to, proc_available
from tests.replay import load_recording


def model(server: BatchServer, name: str = "gpt-4o-mini-2024-07-18", **config: Any) -> LiteLLMModel:
    params = {"model": name, "api_base": server.openai_base}
    return LiteLLMModel(
        name=name,
        config={"model_list": [{"model_name": name, "litellm_params": params}], "batch_poll_interval": 0.01,
                **config},
    )  # fmt: skip


def expected_batch_cost(recording: str) -> float:
    """usage × the price map's *_batches rates, computed here from the raw map."""
    body = json.loads(load_recording(recording)[0]["response"])
    entry = price_map_entry(body["model"])
    usage = body["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return (
        (usage["prompt_tokens"] - cached) * entry["input_cost_per_token_batches"]
        + cached * entry.get("cache_read_input_token_cost_batches", entry["input_cost_per_token_batches"] / 2)
        + usage["completion_tokens"] * entry["output_cost_per_token_batches"]
    )


async def test_results_in_input_order_at_batch_prices(batch_server: BatchServer, batch_dir: Path) -> None:
    llm = model(batch_server)
    prompts = [
        "Say hello",
        [{"role": "user", "content": "What does 42 mean?"}],
        {"messages": "Say hello", "temperature": 0.5},
    ]
    with cost_tracking_ctx():
        before = GLOBAL_COST_TRACKER.lifetime_cost_usd
        results = await llm.call_batch(prompts, batch_dir=str(batch_dir))
        tracked = GLOBAL_COST_TRACKER.lifetime_cost_usd - before

    hello = json.loads(load_recording("openai-chat-ea3a00")[0]["response"])
    meaning = json.loads(load_recording("openai-chat-887c4f")[0]["response"])
    assert [r.text for r in results] == [  # type: ignore[union-attr]
        hello["choices"][0]["message"]["content"],
        meaning["choices"][0]["message"]["content"],
        hello["choices"][0]["message"]["content"],
    ]
    assert results[1].prompt_count == meaning["usage"]["prompt_tokens"]  # type: ignore[union-attr]
    assert results[1].completion_count == meaning["usage"]["completion_tokens"]  # type: ignore[union-attr]
    assert results[0].cost == pytest.approx(expected_batch_cost("openai-chat-ea3a00"), rel=1e-12)  # type: ignore[union-attr]
    assert results[1].cost == pytest.approx(expected_batch_cost("openai-chat-887c4f"), rel=1e-12)  # type: ignore[union-attr]
    assert tracked == pytest.approx(sum(r.cost for r in results), rel=1e-12)  # type: ignore[union-attr]

    # One upload and one batch; the per-item parameter went into that item's body only.
    [batch] = batch_server.created()
    assert [item["custom_id"] for item in batch.items] == ["item-0", "item-1", "item-2"]
    assert batch.items[2]["body"]["temperature"] == 0.5
    assert "temperature" not in batch.items[0]["body"]
    assert batch.items[0]["body"]["model"] == "gpt-4o-mini-2024-07-18"
    assert sum(1 for method, path in batch_server.log if (method, path) == ("POST", "/v1/files")) == 1


async def test_a_rerun_collects_instead_of_submitting_and_bills_once(
    batch_server: BatchServer, batch_dir: Path
) -> None:
    llm = model(batch_server)
    with cost_tracking_ctx():
        first = await llm.call_batch(["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir))
        before = GLOBAL_COST_TRACKER.lifetime_cost_usd
        again = await llm.call_batch(["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir))
        assert GLOBAL_COST_TRACKER.lifetime_cost_usd == before
    assert len(batch_server.created()) == 1
    assert [r.text for r in again] == [r.text for r in first]  # type: ignore[union-attr]


async def test_item_errors_stand_in_place(batch_server: BatchServer, batch_dir: Path) -> None:
    results = await model(batch_server).call_batch(
        ["Say hello", "PLEASE FAIL now", "What does 42 mean?"], batch_dir=str(batch_dir)
    )
    assert results[0].text
    assert results[2].text
    error = results[1]
    assert isinstance(error, BatchItemError)
    assert error.index == 1
    assert error.kind == "errored"
    assert "refused by the test server" in str(error)


async def test_expired_batch_resubmits_only_what_did_not_finish(
    batch_server: BatchServer, batch_dir: Path
) -> None:
    batch_server.expire_after = 2
    llm = model(batch_server)
    prompts = ["Say hello", "What does 42 mean?", "Say hello there", "What does 42 mean now?"]

    async def poll_until_second_batch() -> list[Any]:
        return await llm.call_batch(prompts, batch_dir=str(batch_dir))

    # The first batch expires with 2 of 4 answered; the second is allowed to finish.
    original = batch_server.advance_openai

    def advance(batch: Any) -> None:
        if len(batch_server.batches) > 1:
            batch_server.expire_after = None
        original(batch)

    batch_server.advance_openai = advance  # type: ignore[method-assign]
    results = await poll_until_second_batch()
    first, second = batch_server.created()
    assert first.status == "expired"
    assert second.status == "completed"
    assert [i["custom_id"] for i in second.items] == ["item-2", "item-3"]
    assert all(not isinstance(r, Exception) for r in results)


async def test_failed_batch_makes_every_item_an_error(batch_server: BatchServer, batch_dir: Path) -> None:
    original = batch_server.validate_openai
    batch_server.validate_openai = lambda lines: [  # type: ignore[method-assign]
        *original(lines),
        {"code": "token_limit_exceeded", "message": "Enqueued token limit reached", "line": None},
    ]
    results = await model(batch_server).call_batch(
        ["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir)
    )
    assert all(isinstance(r, BatchItemError) and "Enqueued token limit reached" in str(r) for r in results)


async def test_results_file_with_missing_and_extra_ids(batch_server: BatchServer, batch_dir: Path) -> None:
    batch_server.extra_result = True
    batch_server.drop_result = True
    results = await model(batch_server).call_batch(
        ["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir)
    )
    assert results[0].text  # type: ignore[union-attr]
    assert isinstance(results[1], BatchItemError)
    assert results[1].index == 1
    assert len(results) == 2


async def test_split_by_request_and_byte_limits(batch_server: BatchServer, batch_dir: Path) -> None:
    prompts = [f"Say hello {i}" for i in range(10_000)]
    results = await model(batch_server, batch_max_requests=4_000).call_batch(
        prompts, batch_dir=str(batch_dir)
    )
    assert [len(b.items) for b in batch_server.created()] == [4_000, 4_000, 2_000]
    assert len(results) == 10_000
    assert not any(isinstance(r, Exception) for r in results)
    sent = [item["body"]["messages"][0]["content"] for b in batch_server.created() for item in b.items]
    assert sent == prompts


async def test_byte_limit_splits(batch_server: BatchServer, batch_dir: Path) -> None:
    prompts = ["x" * 1000 + str(i) for i in range(10)]
    await model(batch_server, batch_max_bytes=3_500).call_batch(prompts, batch_dir=str(batch_dir))
    sizes = [len(b.items) for b in batch_server.created()]
    assert sum(sizes) == 10
    assert len(sizes) > 1
    for batch in batch_server.created():
        assert sum(len(json.dumps(i)) for i in batch.items) <= 3_500


async def test_an_item_over_the_context_is_refused_in_place(
    batch_server: BatchServer, batch_dir: Path
) -> None:
    context = price_map_entry("gpt-4o-mini-2024-07-18")["max_input_tokens"]
    huge = "word " * (int(context) + 10)  # type: ignore[call-overload]
    results = await model(batch_server).call_batch(["Say hello", huge], batch_dir=str(batch_dir))
    assert results[0].text  # type: ignore[union-attr]
    assert isinstance(results[1], BatchItemError)
    assert "context" in results[1].reason
    [batch] = batch_server.created()
    assert [item["custom_id"] for item in batch.items] == ["item-0"]


async def test_budgets_refuse_before_sending_and_count_what_was_billed(
    batch_server: BatchServer, batch_dir: Path
) -> None:
    from lmi import BudgetExceeded

    llm = model(batch_server)
    with cost_tracking_ctx(budget_usd=1e-7), pytest.raises(BudgetExceeded):
        await llm.call_batch(["Say hello"], batch_dir=str(batch_dir), max_tokens=50)
    assert not batch_server.created()

    budget = cost_tracking_ctx(budget_usd=0.01)
    async with budget:
        results = await llm.call_batch(
            ["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir), max_tokens=50
        )
        status = await budget.status()
    billed = sum(r.cost for r in results)  # type: ignore[union-attr]
    assert status.spent_usd == pytest.approx(billed, abs=1e-9)
    assert status.reserved_usd == 0


async def test_answers_in_the_response_cache_are_not_submitted(
    batch_server: BatchServer, batch_dir: Path, tmp_path: Path
) -> None:
    llm = model(batch_server, cache=str(tmp_path / "cache.sqlite"))
    first = await llm.call_batch(["Say hello"], batch_dir=str(batch_dir))
    # The batch's answer is in the cache: a plain call finds it (this server has no chat endpoint at all).
    hit = await llm.call_single("Say hello")
    assert hit.cache_hit
    assert hit.text == first[0].text  # type: ignore[union-attr]

    results = await llm.call_batch(["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir))
    second = batch_server.created()[-1]
    assert [item["body"]["messages"][0]["content"] for item in second.items] == ["What does 42 mean?"]
    assert results[0].cache_hit
    assert results[0].text == first[0].text
    assert not results[1].cache_hit  # type: ignore[union-attr]

    refreshed = await llm.call_batch(
        ["Say hello", "What does 42 mean?"], batch_dir=str(tmp_path / "b2"), cache="refresh"
    )
    assert len(batch_server.created()[-1].items) == 2
    assert not any(r.cache_hit for r in refreshed)  # type: ignore[union-attr]


@pytest.mark.skipif(not proc_available(), reason="reads this process's sockets from /proc (Linux)")
async def test_batches_ride_the_loops_pooled_connections(batch_server: BatchServer, batch_dir: Path) -> None:
    # The native transport's session for this loop: what is left open after a batch is its keep-alive
    # connection, and a second batch reuses it rather than opening (and closing) a session of its own.
    llm = model(batch_server)
    port = int(batch_server.openai_base.split(":")[2].split("/")[0])
    await llm.call_batch(["Say hello"], batch_dir=str(batch_dir))
    first = client_sockets_to(port)
    assert first == ["ESTABLISHED"]  # one connection, kept alive in the pool
    await llm.call_batch(["What does 42 mean?"], batch_dir=str(batch_dir))
    assert client_sockets_to(port) == first
    pooled = await session_for(llm.settings.max_connections)
    assert not pooled.closed
