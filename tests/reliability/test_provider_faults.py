"""Provider faults injected for real on loopback: retries, backoff, fallback, one clear error, no hangs.

tests/llms/test_reliability.py covers a 401 fallback, a 5xx retry, a numeric ``retry-after`` and a
timeout without fallback; these go further: backoff timings measured on the server, every 5xx kind,
connection refused and reset, hangs and stalls with a fallback, streams cut before and after text, and
bodies that are not JSON. Every call runs under ``asyncio.timeout`` so a hang fails instead of blocking.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest
from aviary.core import Message

from lmi import LiteLLMModel, LLMResult, ModelCallError
from tests.llms.helpers import recorded, sse_events, warm_litellm
from tests.rate_limiter.conftest import free_port
from tests.reliability.figures import record
from tests.reliability.helpers import BACKUP, BACKUP_STREAM, PRIMARY, STREAM, chat_config
from tests.replay import Fault, ReplayServer

QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]
HANG_GUARD = 10.0  # seconds: no test call may take this long


@pytest.fixture(scope="module", autouse=True)
def _warm(replay_server: ReplayServer) -> None:
    """Timeouts below a second bound whole attempts: litellm's first-call CPU must be spent before."""
    warm_litellm(replay_server)


def _text(name: str) -> str:
    return str(recorded(name)["body"]["choices"][0]["message"]["content"])


def _stream_text(name: str) -> str:
    events = sse_events(recorded(name))
    return "".join(choice["delta"].get("content") or "" for event in events for choice in event["choices"])


def _error(message: str) -> str:
    """An error body in OpenAI's shape."""
    return json.dumps({"error": {"message": message, "type": "server_error"}})


def _gaps(replay: ReplayServer, name: str) -> list[float]:
    """Seconds between consecutive requests the server received for ``name``."""
    arrivals = [request.at for request in replay.requests_for(name)]
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def _with_backup(replay: ReplayServer, **router: Any) -> dict[str, Any]:
    return chat_config(replay.openai_base(PRIMARY), replay.openai_base(BACKUP), **router)


async def _timed(llm: LiteLLMModel, messages: str | list[Message], **kwargs: Any) -> tuple[LLMResult, float]:
    started = time.perf_counter()
    async with asyncio.timeout(HANG_GUARD):
        result = await llm.call_single(messages, **kwargs)
    return result, time.perf_counter() - started


async def test_429_without_retry_after_backs_off_exponentially(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(status=429, body=_error("Rate limit reached for requests"), times=3))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=3, retry_backoff=0.1)
    result, _ = await _timed(LiteLLMModel(config=config), QUESTION)
    assert result.text == _text(PRIMARY)
    gaps = _gaps(replay, PRIMARY)
    record("429 backoff gaps (s), retry_backoff=0.1", ", ".join(f"{gap:.3f}" for gap in gaps))
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert expected <= gap < expected + 0.25


@pytest.mark.parametrize(
    ("form", "make_headers", "at_least"),
    [
        ("retry-after-ms: 350", lambda: {"retry-after-ms": "350"}, 0.35),
        ("retry-after: 0.6", lambda: {"retry-after": "0.6"}, 0.6),
        # An HTTP date (RFC 9110) has whole seconds: 2 s ahead means at least 1 s from now.
        (
            "retry-after: <HTTP date 2 s ahead>",
            lambda: {"retry-after": formatdate(time.time() + 2, usegmt=True)},
            1.0,
        ),
    ],
    ids=["retry-after-ms", "retry-after-seconds", "retry-after-http-date"],
)
async def test_429_retry_after_is_honoured_in_every_form(
    replay: ReplayServer, form: str, make_headers: Callable[[], dict[str, str]], at_least: float
) -> None:
    replay.inject(PRIMARY, Fault(status=429, headers=make_headers(), body=_error("slow down")))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=1, retry_backoff=0.01)
    await _timed(LiteLLMModel(config=config), QUESTION)
    (gap,) = _gaps(replay, PRIMARY)
    record(f"429 with {form} → waited (s)", f"{gap:.3f}")
    assert at_least <= gap < at_least + 1.3


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-5", "soon"])
async def test_unusable_retry_after_falls_back_to_backoff_and_never_hangs(
    replay: ReplayServer, value: str
) -> None:
    replay.inject(PRIMARY, Fault(status=429, headers={"retry-after": value}, body=_error("slow down")))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=1, retry_backoff=0.05)
    result, elapsed = await _timed(LiteLLMModel(config=config), QUESTION)
    assert result.text == _text(PRIMARY)
    assert elapsed < 2.0


async def test_500_502_503_are_retried_with_backoff_then_the_fallback_answers(replay: ReplayServer) -> None:
    for status in (500, 502, 503):
        replay.inject(PRIMARY, Fault(status=status, body=_error(f"injected {status}")))
    config = _with_backup(replay, num_retries=2, retry_backoff=0.1)
    result, elapsed = await _timed(LiteLLMModel(name="primary", config=config), QUESTION)
    assert result.model == "backup"
    assert result.text == _text(BACKUP)
    assert len(replay.requests_for(PRIMARY)) == 3
    assert len(replay.requests_for(BACKUP)) == 1
    gaps = _gaps(replay, PRIMARY)
    record("500→502→503 then fallback: gaps (s), total (s)", f"{gaps[0]:.3f}, {gaps[1]:.3f}; {elapsed:.3f}")
    assert 0.1 <= gaps[0] < 0.6
    assert 0.2 <= gaps[1] < 0.7
    assert elapsed < 0.3 + 1.0


async def test_every_model_failing_raises_one_error_naming_each(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(status=503, body=_error("primary is overloaded"), times=None))
    replay.inject(BACKUP, Fault(status=502, body=_error("backup gateway down"), times=None))
    config = _with_backup(replay, num_retries=1, retry_backoff=0.05)
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        await _timed(LiteLLMModel(name="primary", config=config), QUESTION)
    elapsed = time.perf_counter() - started
    error = raised.value
    assert [model for model, _ in error.attempts] == ["primary", "primary", "backup", "backup"]
    assert "primary is overloaded" in str(error)
    assert "backup gateway down" in str(error)
    assert error.__cause__ is error.last_error
    assert not isinstance(error, BaseExceptionGroup)
    record("all models 5xx → ModelCallError after (s)", f"{elapsed:.3f}")
    assert elapsed < 0.05 * 2 + 1.0


async def test_connection_refused_is_retried_then_the_fallback_answers(replay: ReplayServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    config = chat_config(closed, replay.openai_base(BACKUP), num_retries=2, retry_backoff=0.05)
    result, elapsed = await _timed(LiteLLMModel(name="primary", config=config), QUESTION)
    assert result.model == "backup"
    record("connection refused ×3 then fallback (s)", f"{elapsed:.3f}")
    assert 0.05 + 0.1 <= elapsed < 1.5  # the two backoffs were waited, nothing more


async def test_connection_reset_is_retried(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(drop=True))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=1)
    result, _ = await _timed(LiteLLMModel(config=config), QUESTION)
    assert result.text == _text(PRIMARY)
    assert len(replay.requests_for(PRIMARY)) == 2


async def test_a_hanging_provider_costs_at_most_the_timeout_per_attempt(replay: ReplayServer) -> None:
    replay.inject(PRIMARY, Fault(delay=4.0, replay=True, times=2))
    config = _with_backup(replay, num_retries=1, retry_backoff=0.05, timeout=0.3)
    result, elapsed = await _timed(LiteLLMModel(name="primary", config=config), QUESTION)
    assert result.model == "backup"
    record("hang ×2 (timeout 0.3 s) then fallback (s)", f"{elapsed:.3f}")
    assert 2 * 0.3 <= elapsed < 2 * 0.3 + 0.05 + 0.8


@pytest.mark.parametrize(
    "fault", [{"cut_after_events": 1}, {"stall_after_events": 1, "stall": 3.0}], ids=["cut", "stalled"]
)
async def test_stream_broken_before_any_text_is_retried_without_repeating(
    replay: ReplayServer, fault: dict[str, Any]
) -> None:
    replay.inject(STREAM, Fault(**fault))
    config = chat_config(replay.openai_base(STREAM), num_retries=1, timeout=0.4)
    deltas: list[str] = []
    result, elapsed = await _timed(LiteLLMModel(config=config), "Say hello", callbacks=[deltas.append])
    assert result.text == _stream_text(STREAM)
    assert "".join(deltas) == result.text
    assert len(replay.requests_for(STREAM)) == 2
    assert elapsed < 0.4 + 1.0


@pytest.mark.parametrize(
    "fault", [{"cut_after_events": 4}, {"stall_after_events": 4, "stall": 3.0}], ids=["cut", "stalled"]
)
async def test_stream_broken_after_text_fails_once_and_never_repeats_text(
    replay: ReplayServer, fault: dict[str, Any]
) -> None:
    replay.inject(STREAM, Fault(**fault))
    config = chat_config(
        replay.openai_base(STREAM), replay.openai_base(BACKUP_STREAM), num_retries=2, timeout=0.4
    )
    deltas: list[str] = []
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as raised:
        await _timed(LiteLLMModel(name="primary", config=config), "Say hello", callbacks=[deltas.append])
    elapsed = time.perf_counter() - started
    full = _stream_text(STREAM)
    assert deltas
    assert full.startswith("".join(deltas))
    assert "".join(deltas) != full
    assert [model for model, _ in raised.value.attempts] == ["primary"]
    assert len(replay.requests_for(STREAM)) == 1
    assert not replay.requests_for(BACKUP_STREAM)  # text already reached the caller: no fallback
    kind = "cut" if "cut_after_events" in fault else "stalled"
    record(f"stream {kind} after text → one error after (s)", f"{elapsed:.3f}")
    assert elapsed < 0.4 + 0.8


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
        ('{"id": "chatcmpl-1", "choices": [', "application/json"),
        ("", "application/json"),
    ],
    ids=["html", "truncated-json", "empty"],
)
async def test_200_with_a_body_that_is_not_json(replay: ReplayServer, body: str, content_type: str) -> None:
    replay.inject(PRIMARY, Fault(status=200, body=body, content_type=content_type, times=None))
    config = chat_config(replay.openai_base(PRIMARY), num_retries=1)
    with pytest.raises(ModelCallError) as raised:
        await _timed(LiteLLMModel(config=config), QUESTION)
    assert len(replay.requests_for(PRIMARY)) == 2
    assert [model for model, _ in raised.value.attempts] == ["primary", "primary"]
    replay.clear()
    replay.inject(PRIMARY, Fault(status=200, body=body, content_type=content_type, times=None))
    with_backup = _with_backup(replay, num_retries=1)
    result, _ = await _timed(LiteLLMModel(name="primary", config=with_backup), QUESTION)
    assert result.model == "backup"
    assert result.text == _text(BACKUP)
