"""In-flight limits from outside: an independent log of when each holder entered and left."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter, RedisUnavailableError
from tests.rate_limiter.conftest import MakeLimiter, RedisServer, pause, resume

KEY = ("client", "held")


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    best = running = 0
    for _, change in events:  # at equal times a leave (-1) sorts before an enter (+1)
        running += change
        best = max(best, running)
    return best


async def test_never_more_holders_than_the_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    spans: list[tuple[float, float]] = []
    order: list[int] = []

    async def hold(index: int) -> None:
        async with limiter.concurrency(KEY, 3, acquire_timeout=10):
            entered = time.monotonic()
            order.append(index)
            await asyncio.sleep(0.05)
            spans.append((entered, time.monotonic()))

    started = time.monotonic()
    await asyncio.gather(*(hold(index) for index in range(12)))
    assert len(spans) == 12
    assert _most_at_once(spans) == 3  # full use of the limit, never more
    assert order == list(range(12))  # first come, first served
    assert time.monotonic() - started < 0.05 * 4 + 1.0  # no polling delays: released slots go at once


async def test_timeout_cancellation_and_errors_give_the_slot_back(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    async with limiter.concurrency(KEY, 1):
        with pytest.raises(RateLimitTimeout):
            async with limiter.concurrency(KEY, 1, acquire_timeout=0.2):
                pass
        waiting = asyncio.create_task(limiter.concurrency(KEY, 1).acquire())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    with pytest.raises(ZeroDivisionError):
        async with limiter.concurrency(KEY, 1):
            1 / 0  # noqa: B018
    started = time.monotonic()
    async with limiter.concurrency(KEY, 1, acquire_timeout=2):
        assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("limit", "lease", "named"),
    [
        (0, 1.0, "limit"),
        (-2, 1.0, "limit"),
        (True, 1.0, "limit"),
        (2, -1.0, "lease"),
        (2, 0, "lease"),
        (2, float("nan"), "lease"),
    ],
)
def test_bad_limits_and_leases_are_refused(limit: int, lease: float, named: str) -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    with pytest.raises(ValueError, match=f"[Cc]oncurrency {named}"):
        limiter.concurrency(KEY, limit, lease=lease)


async def test_a_killed_holder_frees_its_slot_when_its_lease_ends(redis_url: str) -> None:
    lease = 1.0
    command = [sys.executable, "-m", "tests.rate_limiter.concurrency_worker", redis_url, "1", str(lease)]
    child = await asyncio.to_thread(subprocess.Popen, command, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == b"held"
        child.kill()  # SIGKILL: no release, no more renewals
        killed = time.monotonic()
        await asyncio.to_thread(child.wait, 10)
    finally:
        if child.poll() is None:
            child.kill()
    limiter = GlobalRateLimiter(redis_url=redis_url)
    async with limiter.concurrency(KEY, 1, lease=lease, acquire_timeout=10):
        freed_after = time.monotonic() - killed
    assert freed_after <= lease + 0.5  # the lease, no longer
    await limiter.aclose()


async def test_a_held_lease_is_renewed_past_its_length(redis_url: str) -> None:
    holder = GlobalRateLimiter(redis_url=redis_url)
    other = GlobalRateLimiter(redis_url=redis_url)
    async with holder.concurrency(KEY, 1, lease=0.6):
        await asyncio.sleep(1.5)  # longer than the lease: renewals keep it
        with pytest.raises(RateLimitTimeout):
            async with other.concurrency(KEY, 1, lease=0.6, acquire_timeout=0.3):
                pass
    async with other.concurrency(KEY, 1, lease=0.6, acquire_timeout=1):
        pass
    await holder.aclose()
    await other.aclose()


async def test_a_frozen_redis_is_one_clear_error(private_redis_server: RedisServer) -> None:
    limiter = GlobalRateLimiter(redis_url=private_redis_server.url, redis_timeout=0.5)
    pause(private_redis_server)
    started = time.monotonic()
    try:
        with pytest.raises(RedisUnavailableError):
            async with limiter.concurrency(KEY, 2, acquire_timeout=30):
                pass
    finally:
        resume(private_redis_server)
    assert time.monotonic() - started < 0.5 + 0.5
    async with limiter.concurrency(KEY, 2, acquire_timeout=5):  # and it works once Redis is back
        pass
    await limiter.aclose()


async def test_releases_still_wake_waiters_after_redis_restarts(private_redis_server: RedisServer) -> None:
    limiter = GlobalRateLimiter(redis_url=private_redis_server.url)
    key = ("client|concurrency", "restarted")
    try:
        async with limiter.concurrency(key, 1, lease=30):
            pass  # the release channel is subscribed now
        private_redis_server.restart()  # an empty server: subscriptions and leases are gone
        for _ in range(50):  # the client reconnects on its next command
            try:
                holder = limiter.concurrency(key, 1, lease=30)
                await holder.__aenter__()
                break
            except RedisUnavailableError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("no slot after the restart")
        started = time.monotonic()

        async def wait_for_slot() -> float:
            async with limiter.concurrency(key, 1, lease=30, acquire_timeout=20):
                return time.monotonic() - started

        waiter = asyncio.create_task(wait_for_slot())
        await asyncio.sleep(0.3)
        released = time.monotonic() - started
        await holder.__aexit__(None, None, None)
        # woken by the release (heard on the re-subscribed channel), not by the 30 s lease running out
        assert await waiter - released < 5
    finally:
        await limiter.aclose()
