"""The in-process store: the algorithm of :mod:`lmi.rate_limiter.backend` on a deque per window.

Each operation is synchronous and short, so it is atomic within an event loop without an asyncio lock;
a threading lock makes it safe when several threads (each with its own loop) share one limiter. A commit
stamps the entry with the clock read in the same synchronous step in which the caller is released, so
windows hold at the callers' own release times.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from lmi.rate_limiter.backend import Grant, WindowState
from lmi.rate_limiter.parsing import WindowSpec

# Timestamps come from the monotonic clock; this tolerance absorbs the float error of converting a
# Unix time handed back by a caller (``charged_at``) to that clock.
_CLOCK_TOLERANCE = 1e-6


_QUEUE_STEP = 1e-6
# Entries count this much longer than their period: a caller proceeds a little after its entry is
# stamped, not always equally late, and one period after another caller is not one period after its
# release unless the window keeps that slack. Usually µs; measured up to 2.6 ms on a 2-core VM waking
# from idle (tests/rate_limiter/test_release_times.py), so 5 ms: 0.5% of a one-second window.
RELEASE_GUARD_SECONDS = 0.005


# An entry is a plain list (a window holds one per acquisition in its period, so they stay small):
# [monotonic time from which the weight counts, weight, committed, live]. `committed` is False while
# its caller has not been released yet; `live` False once trimmed or released (it counts nowhere).
AT, WEIGHT, COMMITTED, LIVE = range(4)


def _entry(at: float, weight: int, committed: bool) -> list[Any]:
    return [at, weight, committed, True]


class _Window:
    __slots__ = ("entries", "spec", "total")

    def __init__(self, spec: WindowSpec) -> None:
        self.entries: deque[list[Any]] = deque()  # in time order
        self.total = 0  # sum of the weights in `entries`
        self.spec = spec

    def trim(self, now: float, period: float) -> None:
        horizon = now - period
        entries = self.entries
        while entries and entries[0][AT] <= horizon:
            entry = entries.popleft()
            entry[LIVE] = False
            self.total -= entry[WEIGHT]

    def blocking_time(
        self, end: float, room: int, period: float, skip: list[Any] | None = None
    ) -> float | None:
        """When the window ending at ``end`` would hold at most ``room`` units of the entries no newer
        than ``end`` (``skip`` aside): None if it does now, else the time the blocking entry leaves."""
        horizon = end - period
        counted = 0
        for entry in reversed(self.entries):
            if entry[AT] > end or entry is skip:
                continue
            if entry[AT] <= horizon:
                break
            if counted + entry[WEIGHT] > room:
                return entry[AT] + period  # once this entry leaves, the newer ones fit
            counted += entry[WEIGHT]
        return None

    def insert(self, entry: list[Any]) -> None:
        """Insert in time order; new entries belong at (or near) the end."""
        entries = self.entries
        index = len(entries)
        while index and entries[index - 1][AT] > entry[AT]:
            index -= 1
        entries.insert(index, entry)

    def remove(self, entry: list[Any]) -> None:
        entries = self.entries
        for index in range(len(entries) - 1, -1, -1):  # reservations sit at the end
            if entries[index] is entry:
                del entries[index]
                return


class MemoryBackend:
    """Moving windows kept in this process; exact within it, unaware of other processes."""

    name = "memory"
    release_guard = RELEASE_GUARD_SECONDS

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()
        # Fixed at construction so that converting to Unix time and back is consistent.
        self._unix_offset = time.time() - time.monotonic()

    def _window(self, namespace: str, key: str, spec: WindowSpec) -> _Window:
        window = self._windows.get((namespace, key))
        if window is None:
            window = self._windows[(namespace, key)] = _Window(spec)
        else:
            window.spec = spec  # the limit may have been reconfigured; the history still counts
        return window

    def _place(self, window: _Window, now: float, weight: int, period: float) -> float:
        """The earliest time >= max(now, last entry) at which ``weight`` fits (first come, first served)."""
        spec, entries = window.spec, window.entries
        # Strictly after the last entry: wake-ups keep the order of the queue.
        start = entries[-1][AT] + _QUEUE_STEP if entries and entries[-1][AT] >= now else now
        if window.total + weight <= spec.amount:
            return start  # every window holds at most `total`
        blocked_until = window.blocking_time(start, spec.amount - weight, period)
        return start if blocked_until is None else blocked_until

    def monotonic(self, at: float) -> float:
        """``time.monotonic()`` at the Unix time ``at`` this store handed out."""
        return at - self._unix_offset

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float, latency: float = 0.0
    ) -> Grant:
        # With a latency the caller's use counts from `latency` after its release, and whatever
        # counts at its release counts against it: the window it is checked in grows by as much.
        period = spec.period_seconds + latency + RELEASE_GUARD_SECONDS
        with self._lock:
            now = time.monotonic() + latency
            window = self._window(namespace, key, spec)
            entries = window.entries
            if entries and entries[0][AT] <= now - period:
                window.trim(now, period)
            at = self._place(window, now, weight, period)
            wait = at - now
            if wait > max_wait:
                return Grant(False, wait, at + self._unix_offset)
            entry = _entry(at, weight, wait <= 0)
            entries.append(entry)
            window.total += weight
        return Grant(True, wait, at + self._unix_offset, entry)

    async def commit(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int, latency: float = 0.0
    ) -> Grant:
        entry = grant.token
        assert isinstance(entry, list)
        period = spec.period_seconds + latency + RELEASE_GUARD_SECONDS
        with self._lock:
            now = time.monotonic() + latency
            window = self._window(namespace, key, spec)
            window.trim(now, period)
            if not entry[LIVE]:  # trimmed: its caller woke (or recounts) more than a period late
                entry[LIVE], entry[AT] = True, self._place(window, now, entry[WEIGHT], period)
                entry[COMMITTED] = entry[AT] <= now  # placed later: a reservation again, as in Redis
                window.entries.append(entry)
                window.total += entry[WEIGHT]
            else:
                now = max(now, entry[AT])  # a timer may fire a hair early: measured at its turn
                blocked_until = window.blocking_time(now, spec.amount - entry[WEIGHT], period, entry)
                window.remove(entry)
                entry[AT] = now if blocked_until is None else blocked_until
                entry[COMMITTED] = blocked_until is None
                window.insert(entry)
            return Grant(True, max(0.0, entry[AT] - now), entry[AT] + self._unix_offset, entry)

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        entry = grant.token
        with self._lock:
            window = self._windows.get((namespace, key))
            if window is None or not isinstance(entry, list) or not entry[LIVE]:
                return
            window.remove(entry)
            entry[LIVE] = False
            window.total -= entry[WEIGHT]  # what it holds now: an adjust may have drained it already

    async def settle(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, reserved: int, used: int
    ) -> None:
        entry = grant.token
        assert isinstance(entry, list)
        with self._lock:
            window = self._window(namespace, key, spec)
            current = entry[WEIGHT] if entry[LIVE] else reserved
            if used < current:
                if entry[LIVE]:
                    entry[WEIGHT] = used
                    window.total -= current - used
                return
        if used > current:
            await self.adjust(namespace, key, spec, used - current, None)

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        with self._lock:
            now = time.monotonic()
            window = self._window(namespace, key, spec)
            window.trim(now, spec.period_seconds)
            if delta > 0:
                window.insert(_entry(now, delta, True))  # counted from now, ahead of pending reservations
                window.total += delta
                return delta
            newest = now if charged_at is None else min(now, charged_at - self._unix_offset)
            if newest <= now - spec.period_seconds:
                return 0  # that charge has already left the window
            wanted = -delta
            for entry in window.entries:  # oldest first: they leave the window no later than the charge
                if entry[AT] > newest + _CLOCK_TOLERANCE or wanted == 0:
                    break
                taken = min(entry[WEIGHT], wanted)
                entry[WEIGHT] -= taken
                wanted -= taken
            released = -delta - wanted
            window.total -= released
            return -released

    async def windows(self, specs: Mapping[tuple[str, str], WindowSpec]) -> list[WindowState]:
        states = []
        with self._lock:
            now = time.monotonic()
            for (namespace, key), window in list(self._windows.items()):
                spec = specs.get((namespace, key), window.spec)
                horizon = now - spec.period_seconds
                # Committed entries count (a caller's latency may stamp them a moment ahead); reservations
                # whose callers were not released yet do not.
                entries = [entry for entry in window.entries if entry[AT] > horizon and entry[COMMITTED]]
                used = sum(entry[WEIGHT] for entry in entries)
                oldest = min(entries[0][AT], now) if entries else now
                states.append(WindowState(namespace, key, spec, used, oldest + self._unix_offset))
        return states

    async def aclose(self) -> None:
        return None
