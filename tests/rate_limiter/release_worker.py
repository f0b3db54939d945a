"""Run in child processes: many waiters each acquire once; report when each was released (local clock)."""

from __future__ import annotations

import asyncio
import time

from lmi.rate_limiter import GlobalRateLimiter


async def _release_times(
    redis_url: str, key: tuple[str, str], limit: str, waiters: int, start_at: float
) -> list[float]:
    limiter = GlobalRateLimiter(rate_config={key: limit}, redis_url=redis_url)
    await limiter.try_acquire(("warm-up", key[1]), rate_limit="100000 per 1 second")  # connect, load
    released: list[float] = []

    async def waiter() -> None:
        await limiter.try_acquire(key, acquire_timeout=60)
        released.append(time.time())

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(waiter() for _ in range(waiters)))
    await limiter.aclose()
    return released


def release_times(
    redis_url: str, key: tuple[str, str], limit: str, waiters: int, start_at: float
) -> list[float]:
    return asyncio.run(_release_times(redis_url, key, limit, waiters, start_at))
