"""A handle on units counted for one use, to be settled once the use is known (or cancelled)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmi.rate_limiter.backend import Backend, Grant
    from lmi.rate_limiter.parsing import WindowSpec


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
    """

    __slots__ = ("_open", "_target", "at", "namespace_and_key", "units")

    def __init__(
        self,
        backend: Backend | None,
        spec: WindowSpec | None,
        namespace_and_key: tuple[str, str],
        units: int,
        at: float,
        grant: Grant | None,
    ) -> None:
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
