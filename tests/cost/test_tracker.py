"""The tracker's totals, its on/off switch across contexts and tasks, callbacks and report."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import defaultdict

import pytest

from lmi.cost import (
    GLOBAL_COST_TRACKER,
    CostRecord,
    CostTracker,
    cost_tracking_ctx,
    cost_tracking_enabled,
    enable_cost_tracking,
    usage_cost,
)
from lmi.types import TokenUsage
from tests.cost.recorded import recorded_calls

USAGE = TokenUsage(prompt_tokens=100, completion_tokens=20, cache_read_tokens=40, reasoning_tokens=5)


def test_totals_equal_the_sum_of_recorded_costs() -> None:
    calls = recorded_calls()
    enable_cost_tracking()
    costs = []
    for call in calls:
        cost = usage_cost(call.request_model, call.usage)
        costs.append(cost)
        GLOBAL_COST_TRACKER.record(call.request_model, call.usage, cost)

    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == pytest.approx(math.fsum(costs), abs=1e-12, rel=0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd > 0
    expected: dict[str, list[float]] = defaultdict(list)
    for call, cost in zip(calls, costs, strict=True):
        expected[call.request_model].append(cost)
    assert set(GLOBAL_COST_TRACKER.by_model) == set(expected)
    for model, model_costs in expected.items():
        totals = GLOBAL_COST_TRACKER.by_model[model]
        mine = [c for c in calls if c.request_model == model]
        assert totals.calls == len(mine)
        assert totals.cost_usd == pytest.approx(math.fsum(model_costs), abs=1e-12, rel=0)
        assert totals.prompt_tokens == sum(c.usage.prompt_tokens for c in mine)
        assert totals.completion_tokens == sum(c.usage.completion_tokens for c in mine)
        assert totals.cache_read_tokens == sum(c.usage.cache_read_tokens for c in mine)
        assert totals.cache_creation_tokens == sum(c.usage.cache_creation_tokens for c in mine)
        assert totals.reasoning_tokens == sum(c.usage.reasoning_tokens for c in mine)
        assert totals.estimated_calls == 0


def test_disabled_by_default_and_when_turned_off() -> None:
    assert not cost_tracking_enabled()
    GLOBAL_COST_TRACKER.record("m", USAGE, 1.0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 0
    assert GLOBAL_COST_TRACKER.by_model == {}

    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("m", USAGE, 1.0)
    enable_cost_tracking(False)
    GLOBAL_COST_TRACKER.record("m", USAGE, 1.0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 1.0
    assert GLOBAL_COST_TRACKER.by_model["m"].calls == 1


def test_ctx_overrides_inside_its_block_only() -> None:
    with cost_tracking_ctx():
        GLOBAL_COST_TRACKER.record("m", USAGE, 0.5)
        with cost_tracking_ctx(False):
            GLOBAL_COST_TRACKER.record("m", USAGE, 100.0)
        GLOBAL_COST_TRACKER.record("m", USAGE, 0.25)
    GLOBAL_COST_TRACKER.record("m", USAGE, 100.0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 0.75

    enable_cost_tracking()
    with cost_tracking_ctx(False):
        GLOBAL_COST_TRACKER.record("m", USAGE, 100.0)
    GLOBAL_COST_TRACKER.record("m", USAGE, 0.25)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 1.0


def test_same_ctx_object_can_be_reentered() -> None:
    ctx = cost_tracking_ctx()
    with ctx, ctx:
        assert cost_tracking_enabled()
    assert not cost_tracking_enabled()


async def test_async_with_and_across_awaits() -> None:
    async with cost_tracking_ctx():
        await asyncio.sleep(0)
        GLOBAL_COST_TRACKER.record("m", USAGE, 0.5)
    GLOBAL_COST_TRACKER.record("m", USAGE, 100.0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 0.5


async def test_concurrent_tasks_on_and_off_do_not_leak() -> None:
    both_inside = asyncio.Barrier(40)

    async def call(index: int, enabled: bool) -> None:
        with cost_tracking_ctx(enabled):
            await both_inside.wait()  # every task is inside its block before any records
            for _ in range(3):
                await asyncio.sleep(0)
                GLOBAL_COST_TRACKER.record(f"{'on' if enabled else 'off'}-{index}", USAGE, 1.0)

    await asyncio.gather(*(call(i, enabled=i % 2 == 0) for i in range(40)))
    assert sorted(GLOBAL_COST_TRACKER.by_model) == sorted(f"on-{i}" for i in range(0, 40, 2))
    assert all(t.calls == 3 for t in GLOBAL_COST_TRACKER.by_model.values())
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 60.0
    assert not cost_tracking_enabled()


async def test_tasks_inherit_the_ctx_they_are_created_in() -> None:
    async def record(model: str) -> None:
        await asyncio.sleep(0)
        GLOBAL_COST_TRACKER.record(model, USAGE, 1.0)

    outside_task = asyncio.create_task(record("created-outside"))
    with cost_tracking_ctx():
        inside_task = asyncio.create_task(record("created-inside"))
    await asyncio.gather(outside_task, inside_task)
    assert list(GLOBAL_COST_TRACKER.by_model) == ["created-inside"]


async def test_global_enable_reaches_new_tasks_but_not_disabled_blocks() -> None:
    blocked = asyncio.Event()
    release = asyncio.Event()

    async def silenced() -> None:
        with cost_tracking_ctx(False):
            blocked.set()
            await release.wait()
            GLOBAL_COST_TRACKER.record("silenced", USAGE, 100.0)

    async def plain() -> None:
        GLOBAL_COST_TRACKER.record("plain", USAGE, 1.0)

    silenced_task = asyncio.create_task(silenced())
    await blocked.wait()
    enable_cost_tracking(True)
    GLOBAL_COST_TRACKER.record("current", USAGE, 1.0)
    await asyncio.create_task(plain())
    release.set()
    await silenced_task
    assert sorted(GLOBAL_COST_TRACKER.by_model) == ["current", "plain"]


def test_enable_inside_a_disabled_block_applies_to_the_current_context() -> None:
    with cost_tracking_ctx(False):
        enable_cost_tracking(True)
        assert cost_tracking_enabled()
    assert cost_tracking_enabled()


def test_threads_record_without_losing_updates() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    per_thread = 2_000

    def work(index: int) -> None:
        for _ in range(per_thread):
            tracker.record(f"model-{index % 2}", TokenUsage(prompt_tokens=3, completion_tokens=1), 0.5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.lifetime_cost_usd == 8 * per_thread * 0.5
    assert sum(t.calls for t in tracker.by_model.values()) == 8 * per_thread
    assert sum(t.prompt_tokens for t in tracker.by_model.values()) == 8 * per_thread * 3


def test_estimated_usage_counted() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    tracker.record("m", TokenUsage(prompt_tokens=5, completion_tokens=5, estimated=True), 0.1)
    tracker.record("m", TokenUsage(prompt_tokens=5, completion_tokens=5), 0.1)
    assert tracker.by_model["m"].estimated_calls == 1
    assert tracker.by_model["m"].calls == 2
    assert "m *" in tracker.report()


def test_sync_callback_receives_the_record() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    seen: list[CostRecord] = []
    tracker.add_callback(seen.append)
    tracker.record("m", USAGE, 0.125, tag="job-1")
    assert len(seen) == 1
    record = seen[0]
    assert (record.model, record.usage, record.cost_usd, record.tag) == ("m", USAGE, 0.125, "job-1")
    assert record.timestamp.tzinfo is not None
    tracker.remove_callback(seen.append)
    tracker.record("m", USAGE, 0.125)
    assert len(seen) == 1


def test_no_callback_when_disabled() -> None:
    tracker = CostTracker()
    seen: list[CostRecord] = []
    tracker.add_callback(seen.append)
    tracker.record("m", USAGE, 1.0)
    assert seen == []


async def test_async_callback_scheduled_without_blocking() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    recorded_returned = asyncio.Event()
    seen: list[CostRecord] = []

    async def callback(record: CostRecord) -> None:
        await recorded_returned.wait()  # would deadlock if record() awaited it
        seen.append(record)

    tracker.add_callback(callback)
    tracker.record("m", USAGE, 0.5)
    assert seen == []
    recorded_returned.set()
    await asyncio.wait_for(asyncio.gather(*tracker._pending), timeout=5)
    assert [r.cost_usd for r in seen] == [0.5]


def test_async_callback_from_sync_code_runs() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    seen: list[str] = []

    async def callback(record: CostRecord) -> None:
        seen.append(record.model)

    tracker.add_callback(callback)
    tracker.record("m", USAGE, 0.5)
    assert seen == ["m"]


async def test_failing_callbacks_log_and_never_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    enable_cost_tracking()
    tracker = CostTracker()

    def broken(record: CostRecord) -> None:
        raise RuntimeError("sync callback broke")

    async def broken_async(record: CostRecord) -> None:
        raise RuntimeError("async callback broke")

    seen: list[CostRecord] = []
    tracker.add_callback(broken)
    tracker.add_callback(broken_async)
    tracker.add_callback(seen.append)
    with caplog.at_level(logging.ERROR, logger="lmi.cost.tracker"):
        tracker.record("m", USAGE, 0.5)
        await asyncio.gather(*tracker._pending)
    assert tracker.lifetime_cost_usd == 0.5
    assert len(seen) == 1
    assert "sync callback broke" in caplog.text
    assert "async callback broke" in caplog.text


def test_report_table_and_reset() -> None:
    enable_cost_tracking()
    tracker = CostTracker()
    assert tracker.report() == "No costs recorded."
    tracker.record("gpt-cheap", TokenUsage(prompt_tokens=1_000, completion_tokens=10), 0.001)
    tracker.record("gpt-cheap", TokenUsage(prompt_tokens=2_000, completion_tokens=20), 0.002)
    tracker.record("claude-dear", TokenUsage(prompt_tokens=10, completion_tokens=1, cache_read_tokens=7), 1.5)
    lines = tracker.report().splitlines()
    assert lines[0].split()[:2] == ["model", "calls"]
    body = [line.split() for line in lines if not set(line) <= {"-"}][1:]
    assert [row[0] for row in body] == ["claude-dear", "gpt-cheap", "total"]  # most expensive first
    assert body[1][1:3] == ["2", "3,000"]
    assert body[0][3] == "7"
    assert body[2][1:3] == ["3", "3,010"]
    assert body[2][-1] == "$1.50"  # cents from $1 up
    assert body[1][-1] == "$0.00300"  # three significant digits below

    tracker.reset()
    assert tracker.lifetime_cost_usd == 0
    assert tracker.by_model == {}
    assert tracker.report() == "No costs recorded."


async def test_one_ctx_instance_entered_by_two_tasks() -> None:
    block = cost_tracking_ctx()
    inside = asyncio.Event()
    seen: dict[str, bool] = {}

    async def task(name: str, hold: bool) -> None:
        async with block:
            seen[name] = cost_tracking_enabled()
            if hold:
                await inside.wait()  # exits after the other task entered and exited
            else:
                inside.set()
        seen[f"{name} after"] = cost_tracking_enabled()

    await asyncio.gather(task("first", hold=True), task("second", hold=False))
    assert seen == {"first": True, "second": True, "first after": False, "second after": False}
    assert not cost_tracking_enabled()


def test_one_ctx_instance_entered_by_two_threads() -> None:
    block = cost_tracking_ctx()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with block:
                barrier.wait(timeout=10)  # both inside at once
                assert cost_tracking_enabled()
                barrier.wait(timeout=10)
            assert not cost_tracking_enabled()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_exiting_a_block_never_entered_here_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="did not enter"):
        cost_tracking_ctx().__exit__(None, None, None)


def test_unpriced_calls_counted_per_model_in_the_report() -> None:
    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("local-a", USAGE, 0.0, priced=False)
    GLOBAL_COST_TRACKER.record("local-a", USAGE, 0.0, priced=False)
    GLOBAL_COST_TRACKER.record("gpt-4o-mini", USAGE, usage_cost("gpt-4o-mini", USAGE))
    assert GLOBAL_COST_TRACKER.unpriced_calls() == {"local-a": 2}
    report = GLOBAL_COST_TRACKER.report()
    assert "local-a !" in report
    assert "2 call(s) not fully priced" in report
    assert "local-a 2" in report
