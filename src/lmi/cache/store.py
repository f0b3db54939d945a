"""What every cache store offers: entries by key, hit statistics, and leases for single flight.

A store keeps opaque values (bytes) under exact keys (:mod:`lmi.cache.keys`), with the USD the stored
answer cost, so that each hit can say what it saved. Stores are shared by every model in a process that
names the same location (:func:`lmi.cache.open_cache`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Entry(NamedTuple):
    value: bytes
    cost_usd: float  # what the stored answer cost: saved by every hit


class Item(NamedTuple):
    """One entry to store."""

    key: str
    value: bytes
    cost_usd: float
    kind: str  # "chat" or "embedding"
    model: str


@dataclass(frozen=True, slots=True)
class CacheStats:
    location: str
    entries: int
    size_bytes: int
    hits: int
    saved_usd: float
    max_bytes: int | None
    ttl_seconds: float | None


class Lease:
    """The right to answer one key while other processes wait for the answer; released once."""

    async def release(self) -> None:
        """Let waiters look again (the answer is stored, or it failed and one of them takes over)."""


NO_LEASE = Lease()


class CacheStore(ABC):
    """A place to keep answers. Every method may raise :class:`lmi.cache.CacheError` naming the store."""

    location: str  # shown in messages and ``lmi cache stats``; never holds a password
    max_bytes: int | None
    ttl_seconds: float | None

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The live entries among ``keys``; each one found counts as a hit and is marked recently used."""

    async def get(self, key: str) -> Entry | None:
        return (await self.get_many([key])).get(key)

    @abstractmethod
    async def put_many(self, items: Sequence[Item]) -> None:
        """Store each item (one transaction each, replacing any entry under its key), then evict the least
        recently used entries while the store is over its size cap."""

    async def put(self, item: Item) -> None:
        await self.put_many([item])

    @abstractmethod
    async def count_hits(self, hits: int, saved_usd: float) -> None:
        """Count answers shared without a lookup (callers that waited on an identical request)."""

    async def flush(self) -> None:  # noqa: B027 - most stores write hits as they happen
        """Write now what hits changed, where a store writes it behind (SQLite: within a second)."""

    @abstractmethod
    async def stats(self) -> CacheStats: ...

    @abstractmethod
    async def clear(self, older_than_seconds: float | None = None) -> int:
        """Remove every entry (or those stored more than ``older_than_seconds`` ago); return how many."""

    async def lease(self, key: str) -> Lease | Entry:
        """Single flight across processes: a lease to answer ``key``, or the entry another process stored
        while we waited. Stores without cross-process coordination lease at once."""
        return NO_LEASE

    async def aclose(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections (the store stays usable: they reopen on next use)."""


__all__ = ["NO_LEASE", "CacheStats", "CacheStore", "Entry", "Item", "Lease"]
