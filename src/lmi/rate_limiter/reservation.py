"""A handle on units counted for one use, to be settled once the use is known (or cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter.parsing import acquire_timeout_seconds

if TYPE_CHECKING:
    from lmi.rate_limiter.backend import Backend, Grant
    from lmi.rate_limiter.parsing import WindowSpec


async def sleep_until(deadline: float) -> None:
    """Sleep until the loop's clock reads ``deadline``: timers due in one order fire in that order
    (``asyncio.sleep`` reads the clock again, which would jitter close deadlines)."""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    handle = loop.call_at(deadline, _wake, woken)
    try:
        await woken
    finally:
        handle.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _whole_units(used: object) -> int:
    if isinstance(used, bool) or not isinstance(used, int) or used < 0:
        raise ValueError(f"Units used must be a whole number >= 0, got {used!r}")
    return used


class Reservation:
    """Units counted in one window for one use, as :meth:`GlobalRateLimiter.reserve` returns them.

    The usual shape, e.g. tokens for an LLM call whose bill is known only afterwards::

        reservation = await GLOBAL_LIMITER.reserve(("client", model), weight=estimate)
        try:
            response = await send(...)
        except BaseException:
            await reservation.cancel()  # nothing was used: the units go back
            raise
        await reservation.settle(response.usage.total_tokens)

    ``settle(used)`` corrects this reservation alone: fewer units free the difference from its own entry
    (never another caller's), more count the excess from now. ``cancel()`` removes it. Each may be called
    once; later calls do nothing. With no limit configured both are no-ops.

    ``count_from_now()`` moves the charge to the moment the use really starts, when that is later than
    the grant (a request whose connection took a while to open).
    """

    __slots__ = ("_latency", "_open", "_target", "at", "namespace_and_key", "units")

    def __init__(
        self,
        backend: Backend | None,
        spec: WindowSpec | None,
        namespace_and_key: tuple[str, str],
        units: int,
        at: float,
        grant: Grant | None,
        latency: float = 0.0,
    ) -> None:
        self._latency = latency  # as given to reserve(): the units count from that much after a commit
        self._target = None if backend is None or spec is None or grant is None else (backend, spec, grant)
        self.namespace_and_key = namespace_and_key
        self.units = units  # what was reserved
        self.at = at  # Unix time (store clock) from which the units count
        self._open = self._target is not None

    @property
    def limited(self) -> bool:
        """False when no limit applied, so nothing was counted."""
        return self._target is not None

    async def settle(self, used: int) -> None:
        """Correct the reservation to the ``used`` units (a whole number >= 0)."""
        used = _whole_units(used)
        if not self._open or self._target is None:
            return
        self._open = False
        backend, spec, grant = self._target
        namespace, key = self.namespace_and_key
        if used == 0:
            await backend.release(namespace, key, spec, grant, self.units)
        elif used != self.units:
            await backend.settle(namespace, key, spec, grant, self.units, used)

    async def count_from_now(self, acquire_timeout: float | None = None) -> None:
        """Count the units from now instead of from :attr:`at`: the use starts later than its grant.

        Other callers were placed relative to the old time; the window ending now is checked again, and
        if it has no room this waits (as :meth:`GlobalRateLimiter.reserve` does) until it has. Raises
        :class:`RateLimitTimeout` if that would take longer than ``acquire_timeout`` (default as for
        ``reserve``), after giving the units back; a failure or cancellation gives them back too.
        """
        if not self._open or self._target is None:
            return
        backend, spec, grant = self._target
        namespace, key = self.namespace_and_key
        timeout = acquire_timeout_seconds(acquire_timeout)
        started = time.monotonic()
        try:
            grant = await backend.commit(namespace, key, spec, grant, self.units, self._latency)
            while grant.wait > 0:
                if grant.wait > timeout - (time.monotonic() - started):
                    raise RateLimitTimeout(
                        f"Rate limit {namespace}/{key}: weight {self.units}, counted again from now, "
                        f"would fit only in {grant.wait:.2f} s, beyond the {timeout:g} s timeout"
                    )
                await sleep_until(backend.monotonic(grant.at) - self._latency)  # as in reserve()
                grant = await backend.commit(namespace, key, spec, grant, self.units, self._latency)
        except BaseException:
            self._open = False
            with contextlib.suppress(Exception):
                await backend.release(namespace, key, spec, grant, self.units)
            raise
        self._target = (backend, spec, grant)
        self.at = grant.at

    async def cancel(self) -> None:
        """Give every reserved unit back: the use never happened."""
        if not self._open or self._target is None:
            return
        self._open = False
        backend, spec, grant = self._target
        namespace, key = self.namespace_and_key
        await backend.release(namespace, key, spec, grant, self.units)

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"Reservation({self.namespace_and_key!r}, units={self.units}, at={self.at:.6f}, {state})"
