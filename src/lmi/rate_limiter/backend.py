"""The seam between :class:`GlobalRateLimiter` and its stores (in-process memory, Redis).

Both stores run the same algorithm, a weighted moving window with reservations:

- a window keeps one entry ``(timestamp, weight)`` per acquisition, in timestamp order, plus their sum,
  so its size follows the number of acquisitions in the period, never their weight;
- an acquisition is placed at the earliest time ``at >= max(now, last entry)`` at which the entries in
  ``(at - period, at]`` plus its weight stay within the limit, and is recorded there at once (a
  reservation); the caller then sleeps until ``at``. One store operation per acquisition, no polling,
  and first come, first served across every process sharing the store;
- because entries are appended in timestamp order and each is checked against the window ending at its
  own time, no window of the period ever holds more than the limit;
- an acquisition that would have to wait longer than the caller's timeout is not recorded.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from lmi.rate_limiter.parsing import WindowSpec


class Grant(NamedTuple):
    """The outcome of one acquisition attempt."""

    granted: bool  # False: it would not fit within the caller's timeout, and nothing was recorded
    wait: float  # seconds from now until the weight counts (0 when it fits now)
    at: float  # Unix time at which the weight counts, on the store's clock
    token: object = None  # what the store needs to cancel this reservation


class WindowState(NamedTuple):
    """One window as :meth:`GlobalRateLimiter.rate_limit_status` reports it."""

    namespace: str
    key: str
    spec: WindowSpec
    used: int  # units counted in the window ending now (future reservations excluded)
    period_start: float  # Unix time of the oldest entry still in the window, else now


class Backend(Protocol):
    """A store of moving windows. ``namespace``, ``key`` and the spec's period identify a window."""

    name: str

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float
    ) -> Grant:
        """Record ``weight`` at the earliest time it fits, unless that is more than ``max_wait`` away."""
        ...

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        """Cancel a reservation whose caller gave up before its time came."""
        ...

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        """Add ``delta`` units now, or release ``-delta`` from entries no newer than ``charged_at``.

        Returns the change actually applied (a release stops at zero).
        """
        ...

    async def windows(self) -> list[WindowState]:
        """Every window the store holds."""
        ...

    async def aclose(self) -> None:
        """Release connections held for the running event loop."""
        ...
