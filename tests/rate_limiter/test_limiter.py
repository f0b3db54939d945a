"""Behaviour shared by both stores: waiting, exactness, timeouts, adjust, status, cancellation."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from lmi.exceptions import RateLimitTimeout
from tests.rate_limiter.conftest import MakeLimiter
from tests.rate_limiter.windows import max_in_any_window

KEY = ("client", "openai/gpt-4o")


async def test_waits_until_the_window_has_room(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "3 per 1 second"})
    started = time.monotonic()
    grants = [await limiter.try_acquire(KEY) for _ in range(4)]
    elapsed = time.monotonic() - started
    assert grants[3] - grants[0] >= 1.0  # the 4th counts only once the 1st has left the window
    assert 0.95 <= elapsed < 1.5


async def test_concurrent_random_weights_never_exceed_any_window(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "20 per 1 second"})
    rng = random.Random(7)
    weights = [rng.randint(1, 7) for _ in range(16)]
    done: list[tuple[float, float, int]] = []

    async def acquire(weight: int) -> None:
        granted_at = await limiter.try_acquire(KEY, weight=weight, acquire_timeout=20)
        done.append((granted_at, time.time(), weight))

    await asyncio.gather(*(acquire(weight) for weight in weights))
    assert len(done) == len(weights)
    assert max_in_any_window([(at, weight) for at, _, weight in done], 1.0) <= 20
    # Nobody returns before the time its weight counts from (small slack for float conversions).
    assert all(returned >= at - 0.005 for at, returned, _ in done)
    # And the window is used well: the total weight needs at least this long, and not much longer.
    span = max(at for at, _, _ in done) - min(at for at, _, _ in done)
    assert sum(weights) / 20 - 1 <= span <= sum(weights) / 20 + 1


async def test_first_come_first_served(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "5 per 1 second"})
    first = await limiter.try_acquire(KEY, weight=4)
    big = asyncio.create_task(limiter.try_acquire(KEY, weight=2))  # must wait for the first to leave
    await asyncio.sleep(0.05)
    small = await limiter.try_acquire(KEY, weight=1)  # would fit now, but queues behind the big one
    assert await big >= first + 1.0
    assert small >= await big  # a stream of small acquisitions cannot starve a big one


async def test_timeout_when_the_turn_comes_too_late(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "2 per 2 seconds"})
    await limiter.try_acquire(KEY, weight=2)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout, match="timeout"):
        await limiter.try_acquire(KEY, acquire_timeout=0.3)
    assert 0.28 <= time.monotonic() - started < 1.5
    # The failed attempt took nothing: the window still holds exactly the first acquisition.
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 2


async def test_weight_that_can_never_fit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(KEY, rate_limit="5 per 1 second", weight=6, acquire_timeout=10)
    assert time.monotonic() - started < 0.5


async def test_status_shape_and_slashes_in_names(make_limiter: MakeLimiter) -> None:
    keys = [("client", "openai/gpt-4o"), ("client|request", "bedrock/anthropic.claude:v1/{x}")]
    limiter = make_limiter(rate_config={keys[0]: "100 per 1 minute", keys[1]: "7 per 2 seconds"})
    before = time.time()
    await limiter.try_acquire(keys[0], weight=30)
    await limiter.try_acquire(keys[0], weight=12)
    await limiter.try_acquire(keys[1], weight=2)
    status = await limiter.rate_limit_status()
    assert set(status) == set(keys)
    for pair, used, cap, seconds, name in [(keys[0], 42, 100, 60, "minute"), (keys[1], 2, 7, 2, "second")]:
        entry = status[pair]
        assert set(entry) == {
            "period_start",
            "n_items_in_period",
            "period_seconds",
            "period_name",
            "period_cap",
        }
        assert entry["n_items_in_period"] == used
        assert entry["period_cap"] == cap
        assert entry["period_seconds"] == seconds
        assert entry["period_name"] == name
        assert before - 1 <= entry["period_start"] <= time.time() + 0.5  # whole seconds
    configured_only = make_limiter(rate_config={("client", "unused/model"): "5/second"})
    status = await configured_only.rate_limit_status()
    assert status[("client", "unused/model")]["n_items_in_period"] == 0


async def test_adjust_adds_and_releases(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "10 per 1 second"})
    charged_at = await limiter.try_acquire(KEY, weight=8)
    await limiter.adjust(KEY, -5, charged_at=charged_at)  # billed 3, not 8
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 3
    started = time.monotonic()
    await limiter.try_acquire(KEY, weight=7, acquire_timeout=5)  # fits now thanks to the release
    assert time.monotonic() - started < 0.6  # otherwise it waits ~1 s
    await limiter.adjust(KEY, -100)  # never below zero
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 0
    await limiter.adjust(KEY, 15)  # billed more than charged: over the limit, later ones wait
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 15
    with pytest.raises(RateLimitTimeout):
        await limiter.try_acquire(KEY, acquire_timeout=0.2)
    started = time.monotonic()
    await limiter.try_acquire(KEY, acquire_timeout=5)
    assert 0.7 <= time.monotonic() - started < 1.5
    await limiter.adjust(("client", "no-limit"), 5)  # no limit configured: nothing to do


async def test_adjust_ignores_a_charge_that_left_the_window(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "5 per 1 second"})
    old_charge = await limiter.try_acquire(KEY, weight=2)
    await asyncio.sleep(1.05)
    await limiter.try_acquire(KEY, weight=4)
    await limiter.adjust(KEY, -2, charged_at=old_charge)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 4


async def test_cancelled_waiter_gives_its_turn_back(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "2 per 1 second"})
    await limiter.try_acquire(KEY, weight=2)
    waiter = asyncio.create_task(limiter.try_acquire(KEY, weight=2))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(1.0)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 0
    started = time.monotonic()
    await limiter.try_acquire(KEY, weight=2, acquire_timeout=5)
    assert time.monotonic() - started < 0.6  # a turn still held would make it wait ~1 s


async def test_rate_config_changes_apply_to_the_next_call(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    await limiter.try_acquire(KEY, weight=10**6)  # no limit yet
    limiter.rate_config[KEY] = "2 per 1 second"
    await limiter.try_acquire(KEY, weight=2)
    with pytest.raises(RateLimitTimeout):
        await limiter.try_acquire(KEY, acquire_timeout=0.1)
    limiter.rate_config[KEY] = "4 per 1 second"  # same period: the window's history still counts
    await limiter.try_acquire(KEY, weight=2, acquire_timeout=0.1)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 4


async def test_unbounded_timeout_waits_its_turn(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_config={KEY: "1 per 1 second"})
    first = await limiter.try_acquire(KEY, acquire_timeout=float("inf"))
    second = await limiter.try_acquire(KEY, acquire_timeout=float("inf"))
    assert second - first >= 1.0
