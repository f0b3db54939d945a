"""The seam between :class:`GlobalRateLimiter` and its stores (in-process memory, Redis).

Both stores run the same algorithm, a weighted moving window with reservations that are committed when
they are used:

- a window is one per ``(namespace, key)``, whatever its limit: it keeps one entry ``(time, weight, id)``
  per acquisition in time order, plus their sum. Its size follows the number of acquisitions in the
  period, never their weight, and a changed limit (count or period) is checked against the same history;
- ``acquire`` places an acquisition at the earliest time ``at >= max(now, last entry)`` at which the
  entries in ``(at - period, at]`` plus its weight stay within the limit, and records it there (a
  reservation): first come, first served across every process sharing the store, no polling;
- the caller sleeps until ``at`` and then ``commit``\\ s: the entry moves to the moment of the commit
  (its release time, which is when the caller actually proceeds) if the window ending then has room,
  else it is placed again and the caller sleeps once more. A caller woken late therefore keeps its
  entry at its real time, and whoever was placed relative to its reserved time finds out at their own
  commit. As each entry is checked against the window ending at its own (final) time, no window of the
  period ever holds more than the limit at the times callers were released;
- an acquisition that fits at once is committed at once (one store operation);
- a caller that finds itself released well after its entry's time (more than half the store's
  ``release_guard``: its loop was busy, its process waited for a core, the answer was slow) commits once
  more, so its entry counts from when it really proceeds;
- an acquisition that would have to wait longer than the caller's timeout is not recorded.

An entry is identified by its ``token``; ``release`` removes it (for a caller that gave up), ``settle``
corrects its weight to what was actually used (a lower weight frees units from this entry alone; a higher
one counts the excess from now).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

from lmi.rate_limiter.parsing import WindowSpec


class Grant(NamedTuple):
    """The outcome of one acquisition or commit attempt."""

    granted: bool  # False: it would not fit within the caller's timeout, and nothing was recorded
    wait: float  # seconds from now until the entry's time (0: committed, it counts from now)
    at: float  # Unix time of the entry, on the store's clock
    token: object = None  # identifies the entry to commit, release or settle


class WindowState(NamedTuple):
    """One window as :meth:`GlobalRateLimiter.rate_limit_status` reports it."""

    namespace: str
    key: str
    spec: WindowSpec  # the limit the window was last used with
    used: int  # units counted in the window ending now (future reservations excluded)
    period_start: float  # Unix time of the oldest entry still in the window, else now


class Backend(Protocol):
    """A store of moving windows, one per ``(namespace, key)``."""

    name: str
    release_guard: float  # seconds entries count beyond their period: slack for callers released late

    def monotonic(self, at: float) -> float:
        """Our ``time.monotonic()`` (the event loop's clock) at the store's Unix time ``at``: sleeping until
        it, reservations made in one order wake in that order."""
        ...

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float, latency: float = 0.0
    ) -> Grant:
        """Record ``weight`` at the earliest time it fits, unless that is more than ``max_wait`` away.

        ``latency``: the units count from that many seconds after the caller is released (the time its
        use may take to reach whoever counts it); ``wait`` and ``at`` are then that much later.

        ``wait == 0``: committed now. Otherwise the caller sleeps ``wait`` seconds, then :meth:`commit`\\ s.
        """
        ...

    async def commit(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int, latency: float = 0.0
    ) -> Grant:
        """Count a reservation from now if the window ending now has room, else place it again."""
        ...

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        """Remove an entry whose caller gave up (with whatever weight it holds now)."""
        ...

    async def settle(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, reserved: int, used: int
    ) -> None:
        """Correct an entry of ``reserved`` units to ``used``: fewer free units of this entry only; more
        count the excess from now."""
        ...

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        """Add ``delta`` units now, or release ``-delta`` from entries no newer than ``charged_at``.

        Returns the change actually applied (a release stops at zero).
        """
        ...

    async def windows(self, specs: Mapping[tuple[str, str], WindowSpec]) -> list[WindowState]:
        """Every window the store holds, measured with ``specs[(namespace, key)]`` when given."""
        ...

    async def aclose(self) -> None:
        """Release connections held for the running event loop."""
        ...
