"""Exact by use time: the densest window of the moments callers were released, measured by the callers
(not the limiter's own timestamps), on a loop that is sometimes late; and the limit well used."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time

from lmi.rate_limiter import GlobalRateLimiter
from tests.rate_limiter.release_worker import release_times
from tests.rate_limiter.windows import max_in_any_window

KEY = ("client", "release-times")


def _utilization(times: list[float], limit: int, period: float) -> float:
    """The shortest time the limit allows for these grants (a full window every period) over the time
    they took."""
    shortest = (math.ceil(len(times) / limit) - 1) * period
    return shortest / (max(times) - min(times))


async def test_memory_100_waiters_on_a_late_loop() -> None:
    limit = 40
    limiter = GlobalRateLimiter(rate_config={KEY: f"{limit} per 1 second"}, use_in_memory=True)
    released: list[float] = []
    done = asyncio.Event()

    async def waiter() -> None:
        await limiter.try_acquire(KEY, acquire_timeout=30)
        released.append(time.monotonic())

    async def late_loop() -> None:  # blocks the loop now and then, so wake-ups come late by varying amounts
        tick = 0
        while not done.is_set():
            time.sleep(0.001 * (tick % 7))  # noqa: ASYNC251
            tick += 1
            await asyncio.sleep(0.003)

    noise = asyncio.create_task(late_loop())
    await asyncio.gather(*(waiter() for _ in range(100)))
    done.set()
    await noise
    assert max_in_any_window([(at, 1) for at in released], 1.0) <= limit
    assert _utilization(released, limit, 1.0) >= 0.9


def test_redis_6_processes_of_40_waiters(redis_url: str) -> None:
    limit, processes, waiters = 60, 6, 40
    start_at = time.time() + 4.0  # time for the children to start and import, even on a loaded machine
    context = multiprocessing.get_context("spawn")
    args = (redis_url, KEY, f"{limit} per 1 second", waiters, start_at)
    with context.Pool(processes) as pool:
        per_process = pool.starmap(release_times, [args] * processes)
    released = [at for times in per_process for at in times]
    assert len(released) == processes * waiters
    assert max_in_any_window([(at, 1) for at in released], 1.0) <= limit
    assert _utilization(released, limit, 1.0) >= 0.9


async def test_redis_a_caller_released_late_is_counted_from_its_release(redis_url: str) -> None:
    """The store stamps a caller when its script runs; if the answer reaches the caller late (here its
    loop is blocked for 0.15 s meanwhile), it proceeds late. Counted from the stamp, a caller released a
    period after that stamp would share a window with it at the callers' end; counted again from its real
    release, none does."""
    import redis

    limit, key = 5, ("client", "released-late")
    limiter = GlobalRateLimiter(rate_config={key: f"{limit} per 1 second"}, redis_url=redis_url)
    await limiter.try_acquire(("client", "warm-up"), rate_limit="1000/second")  # connections ready
    watch = redis.Redis.from_url(redis_url)
    released: list[float] = []

    async def acquire() -> None:
        await limiter.try_acquire(key, acquire_timeout=10)
        released.append(time.monotonic())

    late = asyncio.create_task(acquire())
    for _ in range(3):  # let it write its request
        await asyncio.sleep(0)
    deadline = time.monotonic() + 2
    while not watch.keys("*released-late*") and time.monotonic() < deadline:
        pass  # the script ran (the caller is stamped); the loop stays blocked so its answer waits
    time.sleep(0.15)  # noqa: ASYNC251
    await late
    await asyncio.gather(*(acquire() for _ in range(limit - 1)))  # the rest of the window
    await asyncio.sleep(max(0.0, released[0] + 0.9 - time.monotonic()))
    await asyncio.gather(*(acquire() for _ in range(limit)))  # the next window's worth
    watch.close()
    await limiter.aclose()
    assert max_in_any_window([(at, 1) for at in released], 1.0) <= limit
