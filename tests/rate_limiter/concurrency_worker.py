"""Run in a child process by test_concurrency.py: take a slot, say so, then hang until killed."""

from __future__ import annotations

import asyncio
import sys

from lmi.rate_limiter import GlobalRateLimiter


async def main(redis_url: str, limit: int, lease: float) -> None:
    limiter = GlobalRateLimiter(redis_url=redis_url)
    async with limiter.concurrency(("client", "held"), limit, lease=lease):
        print("held", flush=True)
        await asyncio.Event().wait()  # forever: the test kills this process with SIGKILL


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
