"""The retry/fallback wrapper against a loopback server that misbehaves on purpose.

Every fault is a real recording served by tests/replay.py, slowed, trickled, cut or answered with a
``retry-after``; the server's log of when it received each request is the clock the waits are checked
against. Time checks are bounds with margin: the machine is shared.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest

from lmi import LiteLLMModel, LLMResult, ModelCallError
from lmi.llms.config import RETRY_AFTER_CEILING, RetryPolicy
from tests.llms.helpers import recorded, sse_events, warm_litellm
from tests.reliability.helpers import BACKUP, BACKUP_STREAM, PRIMARY, STREAM, chat_config
from tests.replay import Fault, ReplayServer

QUESTION = "What is the meaning of the universe?"
HANG_GUARD = 15.0  # no call in this file may take this long


def _text(name: str) -> str:
    return str(recorded(name)["body"]["choices"][0]["message"]["content"])


def _stream_text(name: str) -> str:
    events = sse_events(recorded(name))
    return "".join(choice["delta"].get("content") or "" for event in events for choice in event["choices"])


def _gaps(replay: ReplayServer, name: str) -> list[float]:
    arrivals = [request.at for request in replay.requests_for(name)]
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def _error(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "server_error"}})


@pytest.fixture(scope="module", autouse=True)
def _warm(replay_server: ReplayServer) -> None:
    warm_litellm(replay_server)


@pytest.fixture(params=["native", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Both ways a request reaches an OpenAI-compatible server: the fixes live above the transports."""
    if request.param == "litellm":
        import litellm  # noqa: F401  # seconds on first import: not what the timings here measure

    return str(request.param)


def _on(transport: str, config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "transport": transport}


async def _call(llm: LiteLLMModel, prompt: str, **kwargs: Any) -> tuple[LLMResult, float]:
    started = time.perf_counter()
    async with asyncio.timeout(HANG_GUARD):
        result = await llm.call_single(prompt, **kwargs)
    return result, time.perf_counter() - started


async def _failure(llm: LiteLLMModel, prompt: str, **kwargs: Any) -> tuple[ModelCallError, float]:
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        async with asyncio.timeout(HANG_GUARD):
            await llm.call_single(prompt, **kwargs)
    return raised.value, time.perf_counter() - started


# -- 1. timeout bounds a whole attempt -------------------------------------------------------------------


async def test_a_trickled_body_is_cut_off_at_the_timeout(replay: ReplayServer, transport: str) -> None:
    # ~800 bytes, 8 every 0.25 s: each read succeeds quickly, the whole body would take ~25 s.
    replay.inject(PRIMARY, Fault(chunk_bytes=8, chunk_delay=0.25))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=0, timeout=1.0)
    llm = LiteLLMModel(config=_on(transport, config))
    error, elapsed = await _failure(llm, QUESTION)
    assert 1.0 <= elapsed < 2.5  # the whole body would take ~25 s
    ((model, cause),) = error.attempts
    assert model == "primary"
    assert isinstance(cause, TimeoutError)
    assert "timeout=1 s" in str(cause)
    assert len(replay.requests_for(PRIMARY)) == 1


async def test_a_trickled_body_times_out_then_the_retry_answers(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(chunk_bytes=8, chunk_delay=0.25))
    llm = LiteLLMModel(config=chat_config(replay.openai_base(PRIMARY), num_retries=1, timeout=1.0))
    result, elapsed = await _call(llm, QUESTION)
    assert result.text == _text(PRIMARY)
    assert len(replay.requests_for(PRIMARY)) == 2
    assert 0.9 <= _gaps(replay, PRIMARY)[0] < 1.5  # arrivals: the clock started just before the send
    assert elapsed < 2.5


async def test_a_slow_stream_is_cut_off_at_the_timeout_and_not_repeated(
    replay: ReplayServer, transport: str
) -> None:
    # 13 events 0.3 s apart: every event arrives well within any read timeout, the stream takes ~4 s.
    replay.inject(STREAM, Fault(event_delay=0.3, times=None))
    config = chat_config(replay.openai_base(STREAM), num_retries=2, timeout=1.0)
    llm = LiteLLMModel(config=_on(transport, config))
    deltas: list[str] = []
    error, elapsed = await _failure(llm, "Say hello", callbacks=[deltas.append])
    assert 1.0 <= elapsed < 2.5  # the whole stream would take ~4 s
    assert deltas  # some text arrived before the cut ...
    assert _stream_text(STREAM).startswith("".join(deltas))
    assert len(replay.requests_for(STREAM)) == 1  # ... so it was not retried: no text twice
    assert [model for model, _ in error.attempts] == ["primary"]
    assert isinstance(error.attempts[0][1], TimeoutError)


async def test_the_call_timeout_overrides_the_config(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(chunk_bytes=8, chunk_delay=0.25))
    llm = LiteLLMModel(config=chat_config(replay.openai_base(PRIMARY), num_retries=0, timeout=30))
    _, elapsed = await _failure(llm, QUESTION, timeout=0.5)
    assert 0.5 <= elapsed < 2.0  # the config's 30 s would let the body take ~25 s


async def test_waiting_for_our_own_request_limit_is_not_the_providers_time(replay: ReplayServer) -> None:
    name = f"limited-{time.monotonic_ns()}"  # a limiter key no other test shares
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": "gpt-4o-mini", "api_base": replay.openai_base(PRIMARY)},
            }
        ],
        "router_kwargs": {"timeout": 0.8, "num_retries": 0},
        "request_limit": {name: "1/2 seconds"},
    }
    llm = LiteLLMModel(name=name, config=config)
    await _call(llm, QUESTION)
    result, elapsed = await _call(llm, QUESTION)  # queued ~2 s by the limiter, then answered at once
    assert result.text == _text(PRIMARY)
    assert elapsed > 1.0
    assert 1.5 <= _gaps(replay, PRIMARY)[0] < 3.0


# -- 2. retry-after wins over max_backoff, up to a ceiling; total_timeout gives up -----------------------


async def test_retry_after_wins_over_max_backoff(replay: ReplayServer, transport: str) -> None:
    replay.inject(PRIMARY, Fault(status=429, headers={"retry-after": "1.5"}, body=_error("slow down")))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=1, max_backoff=0.1, retry_backoff=0.01)
    llm = LiteLLMModel(config=_on(transport, config))
    result, _ = await _call(llm, QUESTION)
    assert result.text == _text(PRIMARY)
    (gap,) = _gaps(replay, PRIMARY)
    assert 1.5 <= gap < 2.5


def test_retry_after_is_waited_in_full_up_to_the_documented_ceiling() -> None:
    policy = RetryPolicy()  # defaults: max_backoff 30 s
    assert 10 * policy.max_backoff <= RETRY_AFTER_CEILING
    assert policy.delay(0, retry_after=60.0) == 60.0
    assert policy.delay(0, retry_after=2 * RETRY_AFTER_CEILING) == RETRY_AFTER_CEILING
    assert policy.delay(10) == policy.max_backoff  # without retry-after the backoff stays capped
    assert RetryPolicy(min_wait=3.0).delay(0, retry_after=1.0) == 3.0


async def test_a_retry_after_beyond_the_ceiling_moves_on_to_the_fallback(replay: ReplayServer) -> None:
    wait = str(int(RETRY_AFTER_CEILING * 10))
    replay.inject(PRIMARY, Fault(status=429, headers={"retry-after": wait}, body=_error("come back later")))
    config = chat_config(replay.openai_base(PRIMARY), replay.openai_base(BACKUP), num_retries=3)
    result, elapsed = await _call(LiteLLMModel(name="primary", config=config), QUESTION)
    assert result.model == "backup"
    assert len(replay.requests_for(PRIMARY)) == 1
    assert elapsed < 2.0


async def test_a_retry_that_would_pass_total_timeout_gives_up_at_once(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(status=429, headers={"retry-after": "5"}, body=_error("slow down")))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=3, total_timeout=2.0)
    error, elapsed = await _failure(LiteLLMModel(config=config), QUESTION)
    assert elapsed < 3.0  # did not sleep the 5 s towards a retry it could never make
    assert len(replay.requests_for(PRIMARY)) == 1
    ((model, cause),) = error.attempts
    assert model == "primary"
    assert "slow down" in str(cause)


async def test_total_timeout_as_a_call_argument_is_not_sent(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(status=429, headers={"retry-after": "5"}, body=_error("slow down")))
    llm = LiteLLMModel(config=chat_config(replay.openai_base(PRIMARY), num_retries=3))
    _, elapsed = await _failure(llm, QUESTION, total_timeout=2.0)
    assert elapsed < 3.0  # not the 5 s retry-after
    (request,) = replay.requests_for(PRIMARY)
    assert "total_timeout" not in request.body


async def test_total_timeout_bounds_retries_and_fallbacks_together(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(delay=5.0, replay=True, times=None))
    replay.inject(BACKUP, Fault(delay=5.0, replay=True, times=None))
    config = chat_config(
        replay.openai_base(PRIMARY), replay.openai_base(BACKUP), num_retries=1, timeout=0.6, total_timeout=1.0
    )
    error, elapsed = await _failure(LiteLLMModel(name="primary", config=config), QUESTION)
    assert 1.0 <= elapsed < 2.0  # without total_timeout: 4 attempts of 0.6 s
    assert [model for model, _ in error.attempts] == ["primary", "primary"]
    # The first attempt may end on the transport's own timeout (same 0.6 s), the second on total_timeout.
    assert all("Timeout" in type(cause).__name__ for _, cause in error.attempts)
    assert "total_timeout" in str(error.attempts[-1][1])


# -- 3. every attempt is named, whatever path raised ------------------------------------------------------


async def test_a_fallback_failing_mid_stream_keeps_the_primarys_failures(
    replay: ReplayServer, transport: str
) -> None:
    replay.inject(STREAM, Fault(status=500, body=_error("primary exploded"), times=2))
    replay.inject(BACKUP_STREAM, Fault(cut_after_events=4))
    config = chat_config(
        replay.openai_base(STREAM), replay.openai_base(BACKUP_STREAM), num_retries=1, retry_backoff=0.01
    )
    deltas: list[str] = []
    llm = LiteLLMModel(name="primary", config=_on(transport, config))
    error, _ = await _failure(llm, "Say hello", callbacks=[deltas.append])
    assert [model for model, _ in error.attempts] == ["primary", "primary", "backup"]
    assert "primary exploded" in str(error.attempts[0][1])
    assert "primary exploded" in str(error)
    assert error.__cause__ is error.attempts[-1][1]
    assert deltas
    assert _stream_text(BACKUP_STREAM).startswith("".join(deltas))
    assert len(replay.requests_for(BACKUP_STREAM)) == 1


async def test_an_error_of_ours_after_provider_failures_names_them(replay: ReplayServer) -> None:
    replay.inject(STREAM, Fault(status=500, body=_error("primary exploded")))

    def refuse(delta: str) -> None:
        raise KeyError("the callback's own bug")

    config = chat_config(replay.openai_base(STREAM), num_retries=1, retry_backoff=0.01)
    with pytest.raises(KeyError) as raised:
        async with asyncio.timeout(HANG_GUARD):
            await LiteLLMModel(config=config).call_single("Say hello", callbacks=[refuse])
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "primary" in notes
    assert "primary exploded" in notes
