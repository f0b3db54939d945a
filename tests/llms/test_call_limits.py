"""The limits of an LLM call, checked from outside: what the loopback server received and when, what the
cost tracker recorded, and what the limiter holds afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
import zlib
from collections.abc import Iterator

import pytest
from aviary.core import Message

import lmi.rate_limiter
from lmi import LiteLLMModel
from lmi.cost import GLOBAL_COST_TRACKER, cost_tracking_ctx
from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter, RedisUnavailableError
from tests.llms.helpers import recorded
from tests.rate_limiter.conftest import RedisServer, pause, resume
from tests.rate_limiter.windows import max_in_any_window
from tests.replay import Fault, ReplayServer

QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _model(replay: ReplayServer, recording: str, name: str, **config: object) -> LiteLLMModel:
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base(recording)}
    return LiteLLMModel(
        name=name, config={"model_list": [{"model_name": name, "litellm_params": params}], **config}
    )


@pytest.fixture
def redis_limiter() -> Iterator[tuple[RedisServer, GlobalRateLimiter]]:
    """GLOBAL_LIMITER replaced by one on a private Redis that the test may freeze."""
    server = RedisServer()
    limiter = GlobalRateLimiter(redis_url=server.url, redis_timeout=0.5)
    original = lmi.rate_limiter.GLOBAL_LIMITER
    lmi.rate_limiter.GLOBAL_LIMITER = limiter
    try:
        yield server, limiter
    finally:
        lmi.rate_limiter.GLOBAL_LIMITER = original
        resume(server)
        server.kill()


def _calls_recorded(name: str) -> int:
    totals = GLOBAL_COST_TRACKER.by_model.get(name)
    return 0 if totals is None else int(totals.calls)


async def test_a_settle_failure_never_sends_the_request_again(
    replay: ReplayServer, redis_limiter: tuple[RedisServer, GlobalRateLimiter]
) -> None:
    server, _ = redis_limiter
    name = _unique("settle")
    llm = _model(replay, "openai-chat-634cf7", name, rate_limit={name: "100000/minute"})
    replay.inject("openai-chat-634cf7", Fault(delay=1.0, replay=True))  # Redis freezes meanwhile
    with cost_tracking_ctx():
        call = asyncio.create_task(llm.call_single(QUESTION))
    assert await asyncio.to_thread(replay.wait_for_requests, 1)
    pause(server)
    try:
        result = await call  # the answer is paid for: it comes back although the settle failed
    finally:
        resume(server)
    assert result.text
    assert len(replay.requests_for("openai-chat-634cf7")) == 1
    assert _calls_recorded(name) == 1


async def test_a_cancelled_settle_keeps_the_bill(
    replay: ReplayServer, redis_limiter: tuple[RedisServer, GlobalRateLimiter]
) -> None:
    server, _ = redis_limiter
    name = _unique("cancel-settle")
    llm = _model(replay, "openai-chat-634cf7", name, rate_limit={name: "100000/minute"})
    replay.inject("openai-chat-634cf7", Fault(delay=0.5, replay=True))
    with cost_tracking_ctx():
        call = asyncio.create_task(llm.call_single(QUESTION))
    assert await asyncio.to_thread(replay.wait_for_requests, 1)
    pause(server)
    try:
        await asyncio.sleep(0.7)  # the answer arrived; the settle now hangs on the frozen Redis
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        resume(server)
    assert _calls_recorded(name) == 1


async def test_redis_down_is_one_clear_error_and_no_request(
    replay: ReplayServer, redis_limiter: tuple[RedisServer, GlobalRateLimiter]
) -> None:
    server, _ = redis_limiter
    name = _unique("redis-down")
    llm = _model(replay, "openai-chat-634cf7", name, rate_limit={name: "100000/minute"})
    await llm.call_single(QUESTION)  # connected and warm
    replay.clear()
    pause(server)
    started = time.monotonic()
    try:
        with pytest.raises(RedisUnavailableError):
            await llm.call_single(QUESTION)
    finally:
        resume(server)
    assert time.monotonic() - started < 0.5 + 0.5  # one redis_timeout, not four attempts
    assert replay.requests_for("openai-chat-634cf7") == []


async def test_no_request_unit_for_a_call_never_made(replay: ReplayServer) -> None:
    name = _unique("unmade")
    llm = _model(
        replay,
        "openai-chat-634cf7",
        name,
        rate_limit={name: "1000 per 1 minute"},
        request_limit={name: "10 per 1 minute"},
    )
    limiter = lmi.rate_limiter.GLOBAL_LIMITER
    await limiter.try_acquire(("client", name), rate_limit="1000 per 1 minute", weight=1000)  # tokens full
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RATE_LIMITER_TIMEOUT", "0.2")
        for _ in range(3):
            with pytest.raises((RateLimitTimeout, Exception)) as raised:
                await llm.call_single(QUESTION)
            assert isinstance(raised.value, RateLimitTimeout) or isinstance(
                raised.value.__cause__, RateLimitTimeout
            )
        waiting = asyncio.create_task(llm.call_single(QUESTION))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    status = await limiter.rate_limit_status()
    assert status[("client|request", name)]["n_items_in_period"] == 0
    assert replay.requests_for("openai-chat-634cf7") == []


def _billed(recording: str) -> int:
    return int(recorded(recording)["body"]["usage"]["total_tokens"])


async def test_tokens_with_max_tokens_never_exceed_the_limit_at_the_server(replay: ReplayServer) -> None:
    recording = "openai-chat-887c4f"  # max_tokens=56, billed 13 + 56 = 69
    billed = _billed(recording)
    name = _unique("max-tokens")
    limit = 150  # two calls' bills per second, not three
    llm = _model(replay, recording, name, rate_limit={name: f"{limit} per 1 second"})
    question = recorded(recording)["request"]["messages"]
    await asyncio.gather(*(llm.call_single(question, max_tokens=56) for _ in range(3)))
    for _ in range(2):
        await llm.call_single(question, max_tokens=56)
    arrivals = [(received.at, billed) for received in replay.requests_for(recording)]
    assert len(arrivals) == 5
    assert max_in_any_window(arrivals, 1.0) <= limit


def _png(width: int, height: int) -> bytes:
    """A valid PNG of random-looking pixels (incompressible, so the data URL is big)."""
    raw = b"".join(
        b"\x00" + bytes((x * 7 + y * 13 + x * y) % 251 for x in range(width * 3)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def _image_question(recording: str, png: bytes | None = None) -> list[dict[str, object]]:
    messages = json.loads(json.dumps(recorded(recording)["request"]["messages"]))
    if png is not None:
        for part in messages[0]["content"]:
            if part["type"] == "image_url":
                part["image_url"]["url"] = "data:image/png;base64," + base64.b64encode(png).decode()
    return messages


async def test_images_are_reserved_by_the_provider_formula(replay: ReplayServer) -> None:
    recording = "openai-chat-n2-image-7491e6"  # gpt-4o-mini, a 32x32 PNG, billed 8,522
    billed = _billed(recording)
    name = _unique("image")
    limit = 10_000
    llm = _model(replay, recording, name, rate_limit={name: f"{limit} per 1 second"})
    question = _image_question(recording)
    await asyncio.gather(*(llm.call(question, n=2) for _ in range(2)))
    arrivals = [(received.at, billed) for received in replay.requests_for(recording)]
    assert len(arrivals) == 2
    assert max_in_any_window(arrivals, 1.0) <= limit  # the second waited for the first to leave


async def test_a_big_image_is_estimated_by_its_size_not_its_bytes(replay: ReplayServer) -> None:
    recording = "openai-chat-n2-image-7491e6"
    png = _png(600, 600)  # ~1.1 MB of base64; gpt-4o-mini bills 2,833 + 4 tiles x 5,667 = 25,501
    assert len(base64.b64encode(png)) > 1_000_000
    name = _unique("big-image")
    llm = _model(replay, recording, name, rate_limit={name: "100000 per 1 minute"})
    started = time.monotonic()
    results = await llm.call(_image_question(recording, png), n=2)
    assert len(results) == 2
    assert time.monotonic() - started < 5


async def test_max_concurrency_bounds_requests_in_flight_at_the_server(replay: ReplayServer) -> None:
    name = _unique("in-flight")
    llm = _model(replay, "openai-chat-634cf7", name, max_concurrency={name: 2})
    held = 0.3
    replay.inject("openai-chat-634cf7", Fault(delay=held, replay=True, times=None))
    results = await asyncio.gather(*(llm.call_single(QUESTION) for _ in range(6)))
    assert len(results) == 6
    arrivals = sorted(received.at for received in replay.requests_for("openai-chat-634cf7"))
    assert len(arrivals) == 6
    # Each request is held `held` seconds by the server: with two in flight, the third arrives only
    # after the first was answered.
    for index in range(2, 6):
        assert arrivals[index] - arrivals[index - 2] >= held - 0.02


def test_max_concurrency_must_be_a_positive_whole_number() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="concurrency"):
            LiteLLMModel(name="gpt-4o-mini", config={"max_concurrency": {"gpt-4o-mini": bad}})


async def test_without_max_tokens_the_window_exceeds_the_limit_by_one_call_at_most(
    replay: ReplayServer,
) -> None:
    recording = "openai-chat-b2b746"  # no max_tokens: billed 23 + 331 = 354, far over a first guess
    billed = _billed(recording)
    name = _unique("no-max-tokens")
    limit = 800
    llm = _model(replay, recording, name, rate_limit={name: f"{limit} per 1 second"})
    question = recorded(recording)["request"]["messages"]
    for _ in range(5):  # one at a time
        await llm.call_single(question)
    arrivals = sorted(received.at for received in replay.requests_for(recording))
    assert len(arrivals) == 5
    # The README's bound for calls made one at a time: the limit plus one call's excess over its
    # reservation (at most its whole bill).
    assert max_in_any_window([(at, billed) for at in arrivals], 1.0) <= limit + billed
    # After the first call the expected completion is learned: the limit then holds exactly.
    assert max_in_any_window([(at, billed) for at in arrivals[1:]], 1.0) <= limit
