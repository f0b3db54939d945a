"""call_batch through Anthropic's Message Batches (loopback server answering from real recordings)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from lmi import BatchItemError, LiteLLMModel
from lmi.batch import cancel_batch
from tests.batch.conftest import price_map_entry
from tests.batch.servers import BatchServer
from tests.llms.helpers import anthropic_model
from tests.replay import ReplayServer, load_recording

HAIKU = "claude-haiku-4-5-20251001"
SONNET = "claude-sonnet-4-5-20250929"


def model(server: BatchServer, name: str = HAIKU, **params: Any) -> LiteLLMModel:
    params = {"model": f"anthropic/{name}", "api_base": server.url, **params}
    return LiteLLMModel(
        name=name,
        config={"model_list": [{"model_name": name, "litellm_params": params}], "batch_poll_interval": 0.01},
    )


def expected_batch_cost(recording: str) -> float:
    body = json.loads(load_recording(recording)[0]["response"])
    entry = price_map_entry(body["model"])
    usage = body["usage"]
    return (
        usage["input_tokens"] * entry["input_cost_per_token_batches"]  # type: ignore[operator]
        + (usage.get("cache_read_input_tokens") or 0) * entry["cache_read_input_token_cost_batches"]  # type: ignore[operator]
        + (usage.get("cache_creation_input_tokens") or 0) * entry["cache_creation_input_token_cost_batches"]  # type: ignore[operator]
        + usage["output_tokens"] * entry["output_cost_per_token_batches"]  # type: ignore[operator]
    )


@pytest.mark.parametrize(
    ("recording", "name", "prompt"),
    [
        ("anthropic-messages-29fd16", HAIKU, "What does 42 mean?"),
        ("anthropic-messages-5b2c77", HAIKU, "Say hello"),
        ("anthropic-messages-cache-218dab", SONNET, "Say hi."),
    ],
)
async def test_same_answer_as_a_direct_call_at_batch_prices(
    batch_server: BatchServer, batch_dir: Path, replay: ReplayServer, recording: str, name: str, prompt: str
) -> None:
    [batched] = await model(batch_server, name).call_batch([prompt], batch_dir=str(batch_dir))
    direct = await anthropic_model(replay, recording, f"anthropic/{name}").call_single(prompt)
    assert not isinstance(batched, Exception)
    for field in ("text", "prompt_count", "completion_count", "cache_read_tokens", "cache_creation_tokens",
                  "finish_reason"):  # fmt: skip
        assert getattr(batched, field) == getattr(direct, field), field
    assert batched.cost == pytest.approx(expected_batch_cost(recording), rel=1e-12)
    assert batched.cost == pytest.approx(direct.cost / 2, rel=1e-9)  # Anthropic's batch rule: half price


async def test_request_params_in_the_messages_format(batch_server: BatchServer, batch_dir: Path) -> None:
    class Answer(BaseModel):
        answer: str

    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]]
    await model(batch_server, max_tokens=100).call_batch(prompts, batch_dir=str(batch_dir), temperature=0.2)
    [batch] = batch_server.created()
    params = batch.items[0]["params"]
    assert params["model"] == HAIKU
    assert params["max_tokens"] == 100
    assert params["temperature"] == 0.2
    assert params["system"] == [{"type": "text", "text": "Be brief."}]
    assert params["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]


async def test_item_error_and_order(batch_server: BatchServer, batch_dir: Path) -> None:
    results = await model(batch_server).call_batch(
        ["PLEASE FAIL", "Say hello", "What does 42 mean?"], batch_dir=str(batch_dir)
    )
    assert isinstance(results[0], BatchItemError)
    assert "invalid_request_error" in str(results[0])
    assert "Hello" in results[1].text  # type: ignore[union-attr,operator]
    assert "42" in results[2].text  # type: ignore[union-attr,operator]


async def test_cancel_makes_unfinished_items_cancelled(batch_server: BatchServer, batch_dir: Path) -> None:
    batch_server.hold.set()
    llm = model(batch_server)
    task = asyncio.create_task(
        llm.call_batch(["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir), max_poll_interval=0.05)
    )
    # Polled once: the batch is submitted and its id is in the job's state (recorded before any poll).
    while not any(method == "GET" and "/v1/messages/batches/" in path for method, path in batch_server.log):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    job_id = next(iter(batch_server.batches))  # a provider batch id is accepted as well as the job id
    assert await cancel_batch(job_id, batch_dir=str(batch_dir)) == [job_id]
    results = await asyncio.wait_for(task, 60)
    assert all(isinstance(r, BatchItemError) and r.kind == "cancelled" for r in results)


async def test_bad_input(batch_server: BatchServer, batch_dir: Path) -> None:
    llm = model(batch_server)
    with pytest.raises(ValueError, match="one batch goes to one model"):
        await llm.call_batch(
            ["a", {"messages": "b", "model": "anthropic/claude-other"}], batch_dir=str(batch_dir)
        )
    with pytest.raises(ValueError, match="n=2"):
        await llm.call_batch(["a"], batch_dir=str(batch_dir), n=2)
    with pytest.raises(ValueError, match="frequency_penalty"):
        await llm.call_batch(["a"], batch_dir=str(batch_dir), frequency_penalty=0.1)
    gemini = LiteLLMModel(name="gemini/gemini-2.0-flash")
    with pytest.raises(ValueError, match="'gemini' has no batch API"):
        await gemini.call_batch(["a"], batch_dir=str(batch_dir))
    with pytest.raises(TypeError, match="list of prompts"):
        await llm.call_batch("a", batch_dir=str(batch_dir))  # type: ignore[arg-type]
    assert not batch_server.created()
