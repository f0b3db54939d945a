"""Reservations from outside: settle and cancel touch their own entry only, adjust never double-counts,
limit changes keep the history, and a caller that gave up leaves nothing behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter, RedisUnavailableError
from tests.rate_limiter.conftest import MakeLimiter, RedisServer, pause, resume
from tests.rate_limiter.windows import max_in_any_window

KEY = ("client", "openai/gpt-4o")


async def _used(limiter: GlobalRateLimiter, key: tuple[str, str] = KEY) -> int:
    return (await limiter.rate_limit_status())[key]["n_items_in_period"]


async def test_cancel_after_an_adjust_drained_it_never_goes_negative(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    released: list[tuple[float, int]] = []
    first = await limiter.reserve(KEY, weight=6)
    released.append((time.time(), 6))
    await limiter.try_acquire(KEY, weight=4)
    released.append((time.time(), 4))
    await limiter.adjust(KEY, -6)  # drains the oldest entries: the first reservation's 6
    await first.cancel()  # must not take its 6 away a second time
    assert await _used(limiter) == 4
    for _ in range(3):  # 6 more fit now; the 4 already in the window keep the rest waiting
        await limiter.try_acquire(KEY, weight=2, acquire_timeout=5)
        released.append((time.time(), 2))
    with pytest.raises(RateLimitTimeout):
        await limiter.try_acquire(KEY, weight=1, acquire_timeout=0.2)
    assert await _used(limiter) == 10
    # Independent of the limiter: what callers were granted, minus what was handed back.
    net = [(at, weight) for at, weight in released[1:]]
    assert max_in_any_window(net, 1.0) <= 10


async def test_settling_low_frees_only_its_own_units(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    first = await limiter.reserve(KEY, weight=5)
    second = await limiter.reserve(KEY, weight=5)
    await second.settle(2)
    assert await _used(limiter) == 7
    await first.cancel()  # still holds its own 5, untouched by the other's settle
    assert await _used(limiter) == 2
    await second.settle(0)  # settled already: nothing more happens
    assert await _used(limiter) == 2


async def test_settling_high_counts_the_excess_from_now(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    reservation = await limiter.reserve(KEY, weight=3)
    await reservation.settle(8)
    assert await _used(limiter) == 8
    started = time.monotonic()
    await limiter.try_acquire(KEY, weight=3, acquire_timeout=5)
    assert time.monotonic() - started >= 0.9  # the 8 had to leave first


async def test_positive_adjust_counts_from_now_while_a_reservation_waits(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    await limiter.try_acquire(KEY, weight=10)
    waiting = asyncio.create_task(limiter.try_acquire(KEY, weight=7, acquire_timeout=5))
    await asyncio.sleep(0.1)
    await limiter.adjust(KEY, 7)
    assert await _used(limiter) == 17
    await waiting


async def test_a_use_counted_from_now_holds_the_window_from_its_real_start(make_limiter: MakeLimiter) -> None:
    # A request granted at once but written 0.4 s later (its connection was slow): counted from the
    # write, the third unit must wait for the write to leave the window, not the grant.
    limiter = make_limiter(rate_config={KEY: "2 per 1 second"})
    late = await limiter.reserve(KEY)
    await asyncio.sleep(0.4)
    before = late.at
    await late.count_from_now()
    uses = [(time.time(), 1)]
    assert late.at >= before + 0.35
    await limiter.try_acquire(KEY)
    uses.append((time.time(), 1))
    await limiter.try_acquire(KEY, acquire_timeout=5)
    uses.append((time.time(), 1))
    assert uses[2][0] - uses[0][0] >= 0.95  # measured on the callers' clock, not the limiter's
    assert max_in_any_window(uses, 1.0) <= 2


async def test_counting_from_now_waits_for_room_or_gives_the_units_back(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "1 per 1 second"})
    late = await limiter.reserve(KEY)
    await asyncio.sleep(0.1)
    await limiter.adjust(KEY, 1)  # another use counted meanwhile: the window ending now is full
    adjusted = time.time()
    with pytest.raises(RateLimitTimeout, match="counted again"):
        await late.count_from_now(acquire_timeout=0.3)
    assert await _used(limiter) == 1  # only the adjust: the late use's unit went back
    await late.cancel()  # closed already: nothing more happens
    other = await limiter.reserve(KEY, acquire_timeout=5)
    waited = await limiter.reserve(KEY, acquire_timeout=5)  # placed one period after `other`
    started = time.time()
    await asyncio.sleep(0.2)
    await limiter.adjust(KEY, 1)
    await waited.count_from_now(acquire_timeout=5)  # the window ending now holds the adjust: it waits
    assert time.time() >= started + 0.2 + 0.9
    assert other.at >= adjusted + 0.95


async def test_bad_weights_and_units_are_refused(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    for weight in (0, -1, float("nan"), True, float("inf")):
        with pytest.raises(ValueError, match="weight"):
            await limiter.reserve(KEY, weight=weight)
    reservation = await limiter.reserve(KEY, weight=2)
    for used in (-1, 1.5, True):
        with pytest.raises(ValueError, match="Units used"):
            await reservation.settle(used)  # type: ignore[arg-type]


async def test_a_shorter_period_still_sees_the_history(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10/minute"})
    released = []
    for _ in range(10):
        await limiter.try_acquire(KEY)
        released.append((time.time(), 1))
    limiter.rate_config[KEY] = "10/second"
    with pytest.raises(RateLimitTimeout):  # the 10 of this second are still in the window
        await limiter.try_acquire(KEY, acquire_timeout=0.3)
    await limiter.try_acquire(KEY, acquire_timeout=5)
    released.append((time.time(), 1))
    assert max_in_any_window(released, 1.0) <= 10


async def test_the_same_period_spelled_differently_is_one_window(redis_url: str) -> None:
    minute = GlobalRateLimiter(rate_config={KEY: "10/minute"}, redis_url=redis_url)
    seconds = GlobalRateLimiter(rate_config={KEY: "10 per 60 seconds"}, redis_url=redis_url)
    for _ in range(10):
        await minute.try_acquire(KEY)
    with pytest.raises(RateLimitTimeout):
        await seconds.try_acquire(KEY, acquire_timeout=0.2)
    await minute.aclose()
    await seconds.aclose()


async def test_release_on_an_expired_window_leaves_no_key_without_expiry(redis_url: str) -> None:
    import redis

    limiter = GlobalRateLimiter(rate_config={KEY: "5 per 1 second"}, redis_url=redis_url)
    await limiter.try_acquire(KEY, weight=2)
    await asyncio.sleep(1.1)
    await limiter.adjust(KEY, -2)
    await limiter.adjust(("client", "never-used"), -3, rate_limit="5 per 1 second")
    client = redis.Redis.from_url(redis_url)
    try:
        assert all(client.pttl(name) > 0 for name in client.keys("*"))
    finally:
        client.close()
    await limiter.aclose()


async def test_a_caller_that_timed_out_on_a_frozen_redis_leaves_no_reservation(
    private_redis_server: RedisServer,
) -> None:
    limiter = GlobalRateLimiter(
        rate_config={KEY: "10 per 1 minute"}, redis_url=private_redis_server.url, redis_timeout=0.5
    )
    await limiter.try_acquire(KEY)
    pause(private_redis_server)
    try:
        for _ in range(4):
            with pytest.raises(RedisUnavailableError):
                await limiter.try_acquire(KEY)
    finally:
        resume(private_redis_server)
    assert await _used(limiter) == 1  # the four scripts ran after their callers gave up: no phantoms
    await limiter.aclose()


async def test_first_come_first_served_from_a_cold_start(redis_url: str) -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "6 per 1 second"}, redis_url=redis_url)
    order: list[int] = []
    started = time.monotonic()
    waited: dict[int, float] = {}

    async def task(index: int) -> None:
        await limiter.try_acquire(KEY, acquire_timeout=10)
        order.append(index)
        waited[index] = time.monotonic() - started

    await asyncio.gather(*(task(index) for index in range(12)))  # more than one connection's worth
    assert order == list(range(12))
    for index in range(12):  # six per second, in order: task i waits about i // 6 seconds
        assert waited[index] < index // 6 + 0.5
    await limiter.aclose()
