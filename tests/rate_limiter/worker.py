"""Run in child processes by test_processes.py: acquire in a loop, report grant and local times."""

from __future__ import annotations

import asyncio
import time

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter


async def _acquire_until(
    redis_url: str, key: tuple[str, str], limit: str, tasks: int, start_at: float, stop_at: float
) -> list[tuple[float, float, int]]:
    limiter = GlobalRateLimiter(rate_config={key: limit}, redis_url=redis_url)
    records: list[tuple[float, float, int]] = []

    async def one_task(weight: int) -> None:
        while (remaining := stop_at - time.time()) > 0:
            try:
                granted_at = await limiter.try_acquire(key, weight=weight, acquire_timeout=remaining)
            except RateLimitTimeout:
                return
            records.append((granted_at, time.time(), weight))

    # Connect and load the script before the start, so that every process starts on time.
    await limiter.try_acquire(("warm-up", key[1]), rate_limit="1000 per 1 second")
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(one_task(1 + index % 2) for index in range(tasks)))
    await limiter.aclose()
    return records


def acquire_until(
    redis_url: str, key: tuple[str, str], limit: str, tasks: int, start_at: float, stop_at: float
) -> list[tuple[float, float, int]]:
    """``(grant time on the Redis clock, local time after try_acquire returned, weight)`` per acquisition."""
    return asyncio.run(_acquire_until(redis_url, key, limit, tasks, start_at, stop_at))
