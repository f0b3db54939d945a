"""A caller cancelling ``call`` mid-flight: the connection is released, nothing is half charged.

Each test has a replay server of its own, so every socket of this process whose remote end is that
server's port belongs to the call under test; they are counted from ``/proc``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmi import GLOBAL_COST_TRACKER, LiteLLMModel, cost_tracking_ctx
from lmi.rate_limiter import GLOBAL_LIMITER
from tests.reliability.figures import record
from tests.reliability.sockets import client_sockets_to, proc_available
from tests.replay import Fault, ReplayServer

pytestmark = pytest.mark.skipif(not proc_available(), reason="counts sockets through /proc (Linux)")

STREAM = "openai-chat-stream-0f8085"  # "The duck says", 36 events
CHAT = "openai-chat-634cf7"


def _port(server: ReplayServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _model(server: ReplayServer, recording: str, name: str, **router: Any) -> LiteLLMModel:
    params = {"model": "gpt-4o-mini", "api_base": server.openai_base(recording)}
    return LiteLLMModel(
        name=name,
        config={
            "model_list": [{"model_name": name, "litellm_params": params}],
            "rate_limit": {name: "1000000 per 1 minute"},  # tokens: estimated, then settled
            "request_limit": {name: "1000 per 1 minute"},
            "router_kwargs": router,
        },
    )


async def _used(name: str) -> tuple[int, int]:
    """(requests, tokens) counted now in ``name``'s limiter windows."""
    status = await GLOBAL_LIMITER.rate_limit_status()
    requests = status.get(("client|request", name))
    tokens = status.get(("client", name))
    return (
        requests["n_items_in_period"] if requests else 0,
        tokens["n_items_in_period"] if tokens else 0,
    )


async def _received(server: ReplayServer, count: int = 1) -> None:
    assert await asyncio.to_thread(server.wait_for_requests, count, 5.0)


async def test_cancel_mid_stream_releases_the_connection_and_leaves_no_charge(
    private_replay: ReplayServer,
) -> None:
    # A slow stream (36 events, 0.05 s apart): plenty of time to cancel in the middle.
    private_replay.inject(STREAM, Fault(event_delay=0.05, replay=True))
    name = "cancel-mid-stream"
    llm = _model(private_replay, STREAM, name)
    port = _port(private_replay)
    first_delta = asyncio.Event()
    deltas: list[str] = []

    def on_delta(delta: str) -> None:
        deltas.append(delta)
        first_delta.set()

    with cost_tracking_ctx():
        cost_before = GLOBAL_COST_TRACKER.lifetime_cost_usd
        before = client_sockets_to(port)
        task = asyncio.create_task(llm.call_single("The duck says", callbacks=[on_delta]))
        async with asyncio.timeout(5):
            await first_delta.wait()
        during = client_sockets_to(port)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = client_sockets_to(port)
        requests, tokens = await _used(name)
        record("cancel mid-stream: client sockets before/during/after", f"{before} / {during} / {after}")
        assert before == []
        assert during == ["ESTABLISHED"]
        assert after == []  # closed, not left half-read in a pool
        assert len(deltas) < 30  # cancelled well before the stream's end
        assert GLOBAL_COST_TRACKER.lifetime_cost_usd == cost_before
        assert name not in GLOBAL_COST_TRACKER.by_model
        assert tokens == 0  # the estimate charged before the call was handed back
        assert requests == 1  # the request itself was sent, and counts

        # The same model then completes normally, is billed, and the limiter holds the billed tokens.
        result = await llm.call_single("The duck says", callbacks=[deltas.append])
        assert GLOBAL_COST_TRACKER.lifetime_cost_usd == pytest.approx(cost_before + result.cost)
        assert result.cost > 0
        assert await _used(name) == (2, result.prompt_count + result.completion_count)


async def test_cancel_while_waiting_for_a_response(private_replay: ReplayServer) -> None:
    private_replay.inject(CHAT, Fault(delay=3.0, replay=True))
    name = "cancel-waiting"
    llm = _model(private_replay, CHAT, name)
    port = _port(private_replay)
    with cost_tracking_ctx():
        cost_before = GLOBAL_COST_TRACKER.lifetime_cost_usd
        task = asyncio.create_task(llm.call_single("What is the meaning of the universe?"))
        await _received(private_replay)
        during = client_sockets_to(port)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = client_sockets_to(port)
        record("cancel awaiting a response: client sockets during/after", f"{during} / {after}")
        assert during == ["ESTABLISHED"]
        assert after == []
        assert GLOBAL_COST_TRACKER.lifetime_cost_usd == cost_before
        assert await _used(name) == (1, 0)


async def test_cancel_during_retry_backoff_stops_at_once(private_replay: ReplayServer) -> None:
    private_replay.inject(CHAT, Fault(status=503))
    llm = _model(private_replay, CHAT, "cancel-backoff", retry_backoff=5.0, num_retries=1)
    task = asyncio.create_task(llm.call_single("What is the meaning of the universe?"))
    await _received(private_replay)
    await asyncio.sleep(0.2)  # the 503 has arrived; the retry is sleeping its 5 s backoff
    task.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(private_replay.received) == 1  # no retry after the cancellation
