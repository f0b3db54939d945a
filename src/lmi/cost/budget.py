"""Budgets: a USD limit that every call reserves its worst case from before anything is sent.

A call whose worst case fits is granted at once; one that would fit if the calls in flight settled low
enough waits for their settlements (woken by each, never polling); one that cannot fit even if they all
cost nothing raises :class:`~lmi.exceptions.BudgetExceeded`. After the call its reservation settles to the
real cost (or is released when nothing was billed). Amounts are kept in whole nano-USD, rounded up, so a
store adds them exactly and the sum it keeps is never below what was billed.

A budget lives in this process, or with a ``key`` and Redis (``redis_url`` or env ``REDIS_URL``) in
Redis, shared by every process using that key: one atomic script checks and reserves
(:mod:`lmi.cost.budget_redis`), and each reservation holds a lease that its process renews while the call
runs, so a process killed mid-call releases its reservation when the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from lmi.exceptions import BudgetExceeded

logger = logging.getLogger(__name__)

NANO = 1_000_000_000
DEFAULT_LEASE_SECONDS = 60.0
_KEY_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,199}")


def check_budget(value: Any, name: str = "budget_usd") -> float:
    """``value`` as a USD amount; ValueError naming ``name`` for anything negative, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of USD, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of USD >= 0, not {value!r}")
    return float(value)


def check_budget_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_FORMAT.fullmatch(key):
        raise ValueError(
            f"budget_key must be 1-200 characters of letters, digits and _ . : / @ - starting with a letter "
            f"or digit, not {key!r}"
        )
    return key


def to_nano(usd: float) -> int:
    """Whole nano-USD, rounded up: a store's sum of these never falls below the USD billed."""
    return math.ceil(usd * NANO - 1e-6) if usd > 0 else 0


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget as its store sees it now."""

    key: str
    limit_usd: float | None  # None: no process has reserved against this key yet
    spent_usd: float
    reserved_usd: float

    @property
    def left_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(self.limit_usd - self.spent_usd - self.reserved_usd, 0.0)


class BudgetStore(Protocol):
    async def reserve(self, reservation: str, amount: int, limit: int) -> tuple[bool, int, int, float | None]:
        """Reserve if it fits: ``(granted, spent, reserved, seconds until a lease expires or None)``."""

    async def settle(self, reservation: str, cost: int) -> None: ...
    async def status(self) -> tuple[int, int, int | None]: ...
    async def watch(self) -> int:
        """Start listening for settlements; the number of settlements seen so far."""

    async def wait(self, seen: int, patience: float | None) -> None:
        """Return once a settlement after the ``seen``-th happened (or ``patience`` seconds passed)."""


class _MemoryStore:
    """One process's budget: a lock and three numbers, the open reservations, and who waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spent = 0
        self.reserved = 0
        self.limit: int | None = None
        self.settlements = 0
        self._open: dict[str, int] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def reserve(self, reservation: str, amount: int, limit: int) -> tuple[bool, int, int, float | None]:
        with self._lock:
            self.limit = limit
            if self.spent + self.reserved + amount > limit:
                return False, self.spent, self.reserved, None
            self.reserved += amount
            self._open[reservation] = amount
            return True, self.spent, self.reserved, None

    async def settle(self, reservation: str, cost: int) -> None:
        with self._lock:
            self.reserved -= self._open.pop(reservation, 0)
            self.spent += cost
            self.settlements += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:  # waiters may sit on other threads' loops
            if not future.done():
                with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits there
                    loop.call_soon_threadsafe(_wake, future)

    async def status(self) -> tuple[int, int, int | None]:
        with self._lock:
            return self.spent, self.reserved, self.limit

    async def watch(self) -> int:
        return self.settlements

    async def wait(self, seen: int, patience: float | None) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.settlements != seen:
                return
            self._waiters.append((loop, future))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, patience)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_shared_memory_stores: dict[str, _MemoryStore] = {}
_shared_lock = threading.Lock()


def _memory_store(key: str | None) -> _MemoryStore:
    """A keyed budget without Redis is shared by every budget of that key in this process."""
    if key is None:
        return _MemoryStore()
    with _shared_lock:
        return _shared_memory_stores.setdefault(key, _MemoryStore())


class Budget:
    """At most ``limit_usd`` spent by the calls that run under it (see the module's documentation)."""

    def __init__(
        self,
        limit_usd: float,
        key: str | None = None,
        redis_url: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.limit_usd = check_budget(limit_usd)
        self.key = None if key is None else check_budget_key(key)
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int | float):
            raise ValueError(f"lease_seconds must be a number of seconds, not {lease_seconds!r}")
        if not math.isfinite(lease_seconds) or lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be a finite number of seconds > 0, not {lease_seconds!r}")
        self.lease_seconds = float(lease_seconds)
        self._limit = to_nano(self.limit_usd) if self.limit_usd else 0
        self._store: BudgetStore = self._open_store(redis_url)

    def _open_store(self, redis_url: str | None) -> BudgetStore:
        from lmi.rate_limiter.parsing import normalize_redis_url, redis_url_from_env

        url = normalize_redis_url(redis_url) if redis_url else None
        if url is not None and self.key is None:
            raise ValueError("a budget shared through Redis needs a budget_key naming it")
        if url is None and self.key is not None:
            url = redis_url_from_env()
        if url is None:
            return _memory_store(self.key)
        from lmi.cost.budget_redis import RedisBudgetStore

        assert self.key is not None
        return RedisBudgetStore(url, self.key, self.lease_seconds)

    @property
    def label(self) -> str:
        return f"budget {self.key!r}" if self.key else f"budget of ${self.limit_usd:g}"

    def __repr__(self) -> str:
        where = "redis" if type(self._store).__name__ == "RedisBudgetStore" else "memory"
        return f"Budget(limit_usd={self.limit_usd!r}, key={self.key!r}, store={where!r})"

    async def reserve(self, usd: float, what: str = "a call") -> str:
        """Reserve ``usd`` (a worst case); return the reservation's id.

        While the calls in flight might settle low enough for it to fit, wait for them (woken by each
        settlement, never polling); raise BudgetExceeded once it cannot fit even if they all cost nothing.
        """
        reservation = uuid.uuid4().hex
        amount = to_nano(usd)
        granted, spent, reserved, wake = await self._store.reserve(reservation, amount, self._limit)
        while not granted:
            if spent + amount > self._limit:
                raise BudgetExceeded(
                    f"{what} may cost up to ${usd:.6f}, more than is left of the {self.label} "
                    f"(limit ${self.limit_usd:.6f}, spent ${spent / NANO:.6f}, "
                    f"reserved ${reserved / NANO:.6f})",
                    limit_usd=self.limit_usd,
                    spent_usd=spent / NANO,
                    reserved_usd=reserved / NANO,
                    needed_usd=usd,
                )
            seen = await self._store.watch()
            granted, spent, reserved, wake = await self._store.reserve(reservation, amount, self._limit)
            if not granted and spent + amount <= self._limit:
                await self._store.wait(seen, self.lease_seconds if wake is None else wake)
                granted, spent, reserved, wake = await self._store.reserve(reservation, amount, self._limit)
        return reservation

    async def settle(self, reservation: str, usd: float) -> None:
        """Replace the reservation with what the call cost (0 to release it: nothing was billed)."""
        await self._store.settle(reservation, to_nano(usd))

    async def status(self) -> BudgetStatus:
        spent, reserved, limit = await self._store.status()
        return BudgetStatus(
            key=self.key or "",
            limit_usd=None if limit is None else limit / NANO,
            spent_usd=spent / NANO,
            reserved_usd=reserved / NANO,
        )


class Holds:
    """A call's reservations in every budget that applies to it, settled or released together."""

    __slots__ = ("_held",)

    def __init__(self, held: list[tuple[Budget, str]]) -> None:
        self._held = held

    async def settle(self, usd: float) -> None:
        """Settle to ``usd`` everywhere; shielded so a cancellation cannot lose a bill half-recorded."""
        held, self._held = self._held, []
        if held:
            await asyncio.shield(asyncio.gather(*(budget.settle(rid, usd) for budget, rid in held)))

    async def release(self) -> None:
        await self.settle(0.0)


async def settle_budgets(holds: Holds, usd: float, model: str) -> None:
    """Settle a paid call's reservations; a store that fails is logged, never allowed to lose the answer."""
    try:
        await holds.settle(usd)
    except Exception:
        logger.exception("Could not settle the budgets of a call to %s (cost $%.6f)", model, usd)


async def reserve_all(budgets: Iterable[Budget], usd: float, what: str) -> Holds:
    """Reserve ``usd`` in each budget, innermost first; if one refuses, release the others and raise."""
    held: list[tuple[Budget, str]] = []
    try:
        for budget in budgets:
            held.append((budget, await budget.reserve(usd, what)))
    except BaseException:
        await Holds(held).release()
        raise
    return Holds(held)
