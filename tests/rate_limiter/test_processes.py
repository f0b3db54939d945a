"""Several processes share one limit through a real Redis; checked from the recorded timestamps."""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import Counter

from tests.rate_limiter.windows import max_in_any_window
from tests.rate_limiter.worker import acquire_until

KEY = ("client", "openai/gpt-4o")
LIMIT, PERIOD = 6, 1.0
PROCESSES, TASKS = 3, 4
# Long enough that a process whose tasks woke a little late (queued behind the others' second turns,
# about three periods of demand here) still gets its turns before the end: first come, first served.
RUN_SECONDS = 5.0
# Local timestamps are taken after try_acquire returns, a little after the grant; windows this much
# shorter than the period absorb that delay without hiding a real overrun (which is one period long).
LOCAL_CLOCK_SLACK = 0.05


def test_processes_sharing_a_limit_never_exceed_it(redis_url: str) -> None:
    start_at = time.time() + 5.0  # time for the children to start and import, even on a loaded machine
    stop_at = start_at + RUN_SECONDS
    context = multiprocessing.get_context("spawn")
    args = (redis_url, KEY, f"{LIMIT} per 1 second", TASKS, start_at, stop_at)
    with context.Pool(PROCESSES) as pool:
        per_process = pool.starmap(acquire_until, [args] * PROCESSES)

    records = [record for process in per_process for record in process]
    granted = [(at, weight) for at, _, weight in records]
    returned = [(local, weight) for _, local, weight in records]
    assert max_in_any_window(granted, PERIOD) <= LIMIT
    assert max_in_any_window(returned, PERIOD - LOCAL_CLOCK_SLACK) <= LIMIT
    # Every process got turns (first come, first served), and together they used the limit well:
    # LIMIT units at the start, then LIMIT more each period.
    assert all(process for process in per_process)
    capacity = LIMIT * math.ceil(RUN_SECONDS / PERIOD)  # windows that open before the run stops
    assert sum(weight for _, weight in granted) >= 0.8 * capacity
    weights = Counter(weight for _, weight in granted)
    assert set(weights) == {1, 2}
