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
