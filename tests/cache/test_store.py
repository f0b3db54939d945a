"""What every store promises (lmi.cache.store.CacheStore), on SQLite and on a real redis-server alike:
entries by key with their cost, hit statistics, replacing, clearing, least-recently-used eviction, TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import pytest

from lmi.cache import CacheStore, Item
from lmi.cache.redis import RedisStore
from lmi.cache.sqlite import SQLiteStore

KINDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]
MakeStore: TypeAlias = Callable[[int | None, float | None], CacheStore]


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """``make_store(max_bytes, ttl_seconds)``: a new, empty store of the kind under test."""
    if request.param == "sqlite":
        return lambda max_bytes, ttl: SQLiteStore(tmp_path / "c.db", max_bytes=max_bytes, ttl_seconds=ttl)
    url = request.getfixturevalue("redis_url")
    return lambda max_bytes, ttl: RedisStore(url, max_bytes=max_bytes, ttl_seconds=ttl)


def item(key: str, size: int = 100, cost: float = 0.5) -> Item:
    return Item(key, b"v" * size, cost, "chat", "model-a")


async def test_round_trip_stats_replace_and_clear(make_store: MakeStore) -> None:
    store = make_store(None, None)
    assert await store.get("a") is None
    await store.put(item("a", cost=0.25))
    await store.put(item("b", size=10, cost=1.0))
    entry = await store.get("a")
    assert entry is not None
    assert (entry.value, entry.cost_usd) == (b"v" * 100, 0.25)
    assert set(await store.get_many(["a", "b", "c"])) == {"a", "b"}
    await store.count_hits(2, 0.5)  # callers that shared an identical request's answer
    stats = await store.stats()
    assert (stats.entries, stats.size_bytes) == (2, 100 + 1 + 10 + 1)
    assert stats.hits == 3 + 2
    assert stats.saved_usd == pytest.approx(0.25 + 0.25 + 1.0 + 0.5)
    await store.put(item("a", size=1, cost=0.1))  # replaced, not added
    stats = await store.stats()
    assert (stats.entries, stats.size_bytes) == (2, 2 + 11)
    assert await store.clear() == 2
    assert (await store.stats()).entries == 0
    assert await store.get("b") is None
    await store.aclose()


async def test_least_recently_used_entries_go_first(make_store: MakeStore) -> None:
    store = make_store(3 * 101, None)
    for key in "abc":
        await store.put(item(key))
        await asyncio.sleep(0.002)  # distinct millisecond times
    assert await store.get("a") is not None  # a is now more recent than b and c
    await asyncio.sleep(0.002)
    await store.put(item("d"))
    assert set(await store.get_many(list("abcd"))) == {"a", "c", "d"}
    await asyncio.sleep(0.002)
    assert await store.get("d") is not None  # d is now the most recent
    await asyncio.sleep(0.002)
    await store.put(item("e", size=150))  # needs two entries' room
    assert set(await store.get_many(list("abcde"))) == {"d", "e"}
    assert (await store.stats()).size_bytes <= 3 * 101
    await store.aclose()


async def test_an_entry_larger_than_the_cap_is_kept_alone(make_store: MakeStore) -> None:
    store = make_store(50, None)
    await store.put(item("a", size=10))
    await store.put(item("big", size=500))
    assert set(await store.get_many(["a", "big"])) == {"big"}
    await store.aclose()


async def test_entries_expire_after_the_ttl(make_store: MakeStore) -> None:
    store = make_store(None, 0.3)
    await store.put(item("old"))
    assert await store.get("old") is not None
    await asyncio.sleep(0.4)
    await store.put(item("new"))
    assert set(await store.get_many(["old", "new"])) == {"new"}
    stats = await store.stats()
    assert (stats.entries, stats.size_bytes) == (1, 100 + 3)
    await store.aclose()
