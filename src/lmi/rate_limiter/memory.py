"""The in-process store: the algorithm of :mod:`lmi.rate_limiter.backend` on a deque per window.

Each operation is synchronous and short, so it is atomic within an event loop without an asyncio lock;
a threading lock makes it safe when several threads (each with its own loop) share one limiter.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from lmi.rate_limiter.backend import Grant, WindowState
from lmi.rate_limiter.parsing import WindowSpec

# Timestamps come from the monotonic clock; this tolerance absorbs the float error of converting a
# Unix time handed back by a caller (``charged_at``) to that clock.
_CLOCK_TOLERANCE = 1e-6


class _Window:
    __slots__ = ("entries", "spec", "total")

    def __init__(self, spec: WindowSpec) -> None:
        self.entries: deque[list[float]] = deque()  # [monotonic timestamp, weight], in timestamp order
        self.total = 0  # sum of the weights in `entries`
        self.spec = spec

    def trim(self, now: float) -> None:
        horizon = now - self.spec.period_seconds
        entries = self.entries
        while entries and entries[0][0] <= horizon:
            self.total -= int(entries.popleft()[1])

    def next_start(self, now: float) -> float:
        """No acquisition is placed before the last one: first come, first served."""
        return max(now, self.entries[-1][0]) if self.entries else now

    def earliest_fit(self, start: float, weight: int) -> float:
        """The earliest time >= ``start`` at which ``weight`` fits in the window ending there."""
        spec = self.spec
        if self.total + weight <= spec.amount:
            return start  # every window holds at most `total`
        room = spec.amount - weight
        horizon = start - spec.period_seconds
        counted = 0.0
        for timestamp, entry_weight in reversed(self.entries):
            if timestamp <= horizon:
                break
            if counted + entry_weight > room:
                return timestamp + spec.period_seconds  # once this entry leaves, the rest fit
            counted += entry_weight
        return start


class MemoryBackend:
    """Moving windows kept in this process; exact within it, unaware of other processes."""

    name = "memory"

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, int], _Window] = {}
        self._lock = threading.Lock()
        # Fixed at construction so that converting to Unix time and back is consistent.
        self._unix_offset = time.time() - time.monotonic()

    def _window(self, namespace: str, key: str, spec: WindowSpec) -> _Window:
        window_id = (namespace, key, spec.period_seconds)
        window = self._windows.get(window_id)
        if window is None:
            window = self._windows[window_id] = _Window(spec)
        else:
            window.spec = spec  # the count may have been reconfigured; the history still counts
        return window

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float
    ) -> Grant:
        with self._lock:
            now = time.monotonic()
            window = self._window(namespace, key, spec)
            entries = window.entries
            if entries and entries[0][0] <= now - spec.period_seconds:
                window.trim(now)
            if entries and entries[-1][0] > now:
                at = window.earliest_fit(entries[-1][0], weight)
            elif window.total + weight <= spec.amount:
                at = now  # the common case: it fits now
            else:
                at = window.earliest_fit(now, weight)
            wait = at - now
            if wait > max_wait:
                return Grant(False, wait, at + self._unix_offset)
            entry = [at, weight]
            entries.append(entry)
            window.total += weight
        return Grant(True, wait, at + self._unix_offset, entry)

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        with self._lock:
            window = self._windows.get((namespace, key, spec.period_seconds))
            if window is None:
                return
            for index in range(len(window.entries) - 1, -1, -1):  # reservations sit at the end
                if window.entries[index] is grant.token:
                    del window.entries[index]
                    window.total -= weight
                    return

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        with self._lock:
            now = time.monotonic()
            window = self._window(namespace, key, spec)
            window.trim(now)
            if delta > 0:
                window.entries.append([window.next_start(now), delta])
                window.total += delta
                return delta
            newest = now if charged_at is None else min(now, charged_at - self._unix_offset)
            if newest <= now - spec.period_seconds:
                return 0  # that charge has already left the window
            wanted = -delta
            for entry in window.entries:  # oldest first: they leave the window no later than the charge
                if entry[0] > newest + _CLOCK_TOLERANCE or wanted == 0:
                    break
                taken = min(int(entry[1]), wanted)
                entry[1] -= taken
                wanted -= taken
            released = -delta - wanted
            window.total -= released
            return -released

    async def windows(self) -> list[WindowState]:
        states = []
        with self._lock:
            now = time.monotonic()
            for (namespace, key, _), window in list(self._windows.items()):
                window.trim(now)
                used = window.total - sum(int(w) for ts, w in window.entries if ts > now)
                oldest = window.entries[0][0] if window.entries and window.entries[0][0] <= now else now
                states.append(WindowState(namespace, key, window.spec, used, oldest + self._unix_offset))
        return states

    async def aclose(self) -> None:
        return None
