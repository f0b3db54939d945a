"""Memory backend: non-waiting acquisitions of weight 2000, lmi vs the naive ``limits`` moving window.

The reference is ``limits``' MemoryStorage + MovingWindowRateLimiter.hit(item, cost=2000), which stores
one entry per unit of weight. Both run in one process, interleaved in short rounds; the figure is the
median of the per-round ratios (reference time / lmi time).

    python bench/rate_limit_memory.py [--rounds 9] [--acquisitions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from lmi.rate_limiter import GlobalRateLimiter

WEIGHT = 2000
KEY = ("client", "bench-model")


async def lmi_round(acquisitions: int, limit: str) -> float:
    limiter = GlobalRateLimiter(rate_config={KEY: limit}, use_in_memory=True)
    started = time.perf_counter()
    for _ in range(acquisitions):
        await limiter.try_acquire(KEY, weight=WEIGHT)
    elapsed = time.perf_counter() - started
    status = await limiter.rate_limit_status()
    assert status[KEY]["n_items_in_period"] == acquisitions * WEIGHT, "every acquisition must count"
    return elapsed


def limits_round(acquisitions: int, limit: str) -> float:
    item = limits.parse(limit)
    storage = MemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    started = time.perf_counter()
    for _ in range(acquisitions):
        assert limiter.hit(item, *KEY, cost=WEIGHT), "the reference must not be limited either"
    elapsed = time.perf_counter() - started
    storage.reset()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--acquisitions", type=int, default=200)
    options = parser.parse_args()
    limit = f"{options.acquisitions * WEIGHT * 10} per 1 minute"  # never reached: nobody waits

    ratios, ours, theirs = [], [], []
    for round_index in range(options.rounds):
        # Alternate which goes first so that neither always runs on a warmer (or noisier) machine.
        if round_index % 2:
            reference = limits_round(options.acquisitions, limit)
            mine = await lmi_round(options.acquisitions, limit)
        else:
            mine = await lmi_round(options.acquisitions, limit)
            reference = limits_round(options.acquisitions, limit)
        ours.append(mine / options.acquisitions)
        theirs.append(reference / options.acquisitions)
        ratios.append(reference / mine)

    print(f"memory backend, {options.acquisitions} non-waiting acquisitions of weight {WEIGHT} per round,")
    print(f"{options.rounds} interleaved rounds (median):")
    print(
        f"  lmi GlobalRateLimiter.try_acquire          {statistics.median(ours) * 1e6:10.1f} µs / acquisition"
    )
    print(
        f"  limits MovingWindowRateLimiter.hit (naive) {statistics.median(theirs) * 1e6:10.1f} µs "
        "/ acquisition"
    )
    print(
        f"  speed-up, median of per-round ratios       {statistics.median(ratios):10.1f} x  (target >= 10 x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
