"""A budget shared through Redis by several processes, and the lease that frees a killed one's share."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
import uuid
from collections.abc import Iterator

import pytest

from lmi import BudgetExceeded, cost_tracking_ctx
from lmi.cost import Budget
from tests.cost.budget_worker import RECORDING, hold_call, run_calls
from tests.cost.variants import body, price_map
from tests.rate_limiter.conftest import RedisServer
from tests.replay import Fault, ReplayServer

PROCESSES, CALLS = 4, 50


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    yield server.url
    server.kill()


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """Children forked from one server process that imported litellm once: four imports on two loaded
    cores would take longer than the test itself."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["litellm", "lmi", "tests.cost.budget_worker"])
    return context


def call_cost() -> float:
    response = body(RECORDING)
    entry, usage = price_map()[response["model"]], response["usage"]
    return (
        usage["prompt_tokens"] * entry["input_cost_per_token"]
        + usage["completion_tokens"] * entry["output_cost_per_token"]
    )


def test_processes_sharing_a_budget_never_exceed_it(replay: ReplayServer, redis_url: str) -> None:
    budget, key = 30 * call_cost(), f"shared-{uuid.uuid4().hex[:8]}"
    replay.stream_delay = 0.0
    replay.inject(RECORDING, Fault(delay=0.05, replay=True, times=None))  # calls overlap across processes
    context = _forkserver()
    start, results = context.Barrier(PROCESSES), context.Queue()
    args = (replay.openai_base(RECORDING), redis_url, key, budget, CALLS, start, results)
    processes = [context.Process(target=run_calls, args=args) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    per_process = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    billed = [cost for costs in per_process for cost in costs]
    total = math.fsum(billed)
    assert len(replay.requests_for(RECORDING)) == len(billed)  # refused calls were never sent
    assert total <= budget
    assert total >= 0.9 * budget
    status = asyncio.run(Budget(budget, key=key, redis_url=redis_url).status())
    assert status.reserved_usd == 0
    assert total - 1e-15 <= status.spent_usd <= budget  # Redis keeps whole nano-USD, rounded up


def test_killed_process_releases_its_reservation_within_its_lease(
    replay: ReplayServer, redis_url: str
) -> None:
    key, lease = f"killed-{uuid.uuid4().hex[:8]}", 1.0
    budget = 1e-5  # room for the child's call (worst case ~7.5e-6), and not for another 5e-6 beside it
    replay.inject(RECORDING, Fault(delay=60.0, replay=True))
    child = _forkserver().Process(
        target=hold_call, args=(replay.openai_base(RECORDING), redis_url, key, budget, lease)
    )
    child.start()
    try:
        assert replay.wait_for_requests(1, timeout=60.0), "the child never sent its call"
        holder = Budget(budget, key=key, redis_url=redis_url)
        held = asyncio.run(holder.status()).reserved_usd
        assert held > 0
        wanted = budget - held + 1e-7  # fits only once the child's reservation is gone
        child.kill()  # SIGKILL: no cleanup, the reservation stays until its lease runs out
        child.join(timeout=10)
        killed_at = time.monotonic()

        async def reserve_after_the_lease() -> float:
            rid = await holder.reserve(wanted, "a call after the kill")  # waits for the lease to end
            waited = time.monotonic() - killed_at
            await holder.settle(rid, 0.0)
            return waited

        waited = asyncio.run(reserve_after_the_lease())
        assert 0.3 <= waited <= lease + 2.0  # held until the lease ran out, plus a loaded machine's slack
        assert asyncio.run(holder.status()).reserved_usd == 0
    finally:
        child.kill()
        child.join(timeout=10)


async def test_refused_when_it_could_never_fit(redis_url: str) -> None:
    key = f"small-{uuid.uuid4().hex[:8]}"
    with cost_tracking_ctx(budget_usd=1e-9, budget_key=key, redis_url=redis_url) as block:
        with pytest.raises(BudgetExceeded, match=key):
            await block.budget.reserve(1e-6)  # type: ignore[union-attr]
        assert (await block.status()).limit_usd == pytest.approx(1e-9)
