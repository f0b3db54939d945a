"""GlobalRateLimiter: limits per ``(namespace, key)``, kept in memory or in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, NoReturn, TypedDict, TypeVar

from lmi.exceptions import RateLimitTimeout, RedisUnavailableError
from lmi.rate_limiter.backend import Backend, Grant, WindowState
from lmi.rate_limiter.concurrency import (
    DEFAULT_LEASE_SECONDS,
    ConcurrencySlot,
    MemorySlots,
    RedisLeases,
    check_concurrency,
)
from lmi.rate_limiter.defaults import MATCH_ALL
from lmi.rate_limiter.fhlmi import FhlmiInspection
from lmi.rate_limiter.memory import MemoryBackend
from lmi.rate_limiter.parsing import (
    RateConfig,
    WindowSpec,
    acquire_timeout_seconds,
    normalize_redis_url,
    parse_rate_limit,
    redacted,
    redis_url_from_env,
    whole_weight,
)
from lmi.rate_limiter.redis import RedisBackend
from lmi.rate_limiter.reservation import Reservation, sleep_until
from lmi.rate_limiter.web import is_web, web_key

if TYPE_CHECKING:
    from limits import RateLimitItem

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
NamespaceAndKey = tuple[str, str]

# With fallback_to_memory, how long to use memory after Redis failed before trying Redis again.
FALLBACK_RETRY_SECONDS = 30.0


class RateLimitStatus(TypedDict):
    period_start: int  # Unix time, whole seconds, of the oldest acquisition in the window (now if none)
    n_items_in_period: int  # units counted in the window ending now
    period_seconds: int
    period_name: str  # "second", "minute", ... (the limit's granularity)
    period_cap: int  # units allowed per period


class GlobalRateLimiter(FhlmiInspection):
    """Moving-window limits per ``(namespace, key)``, exact within a process or across processes.

    Args:
        rate_config: ``{(namespace, key): "100/minute" | limits.RateLimitItem}``, copied into
            :attr:`rate_config`; changes to that attribute apply to the next call.
        use_in_memory: keep the windows in this process even when Redis is configured.
        redis_url: Redis to share windows with other processes; defaults to env ``REDIS_URL``. Without a
            scheme (``localhost:6379``) it means ``redis://``; use ``rediss://`` for TLS. Nothing connects
            until the first acquisition.
        fallback_to_memory: when Redis cannot be reached, log a warning and limit in this process
            instead (retrying Redis every 30 s). Off by default: an unreachable Redis raises
            :class:`RedisUnavailableError` within ``redis_timeout``.
        redis_timeout: seconds one Redis round trip (connect included) may take.
    """

    WAIT_INCREMENT: ClassVar[float] = 0.01  # fhlmi's polling step, kept for code that reads it; we never poll

    def __init__(
        self,
        rate_config: Mapping[NamespaceAndKey, str | RateLimitItem] | None = None,
        use_in_memory: bool = False,
        redis_url: str | None = None,
        *,
        fallback_to_memory: bool = False,
        redis_timeout: float = 5.0,
    ) -> None:
        self.rate_config = rate_config or {}
        self.use_in_memory = use_in_memory
        self.fallback_to_memory = fallback_to_memory
        self.redis_timeout = redis_timeout
        self._redis_url = normalize_redis_url(redis_url) if redis_url else None
        self._memory = MemoryBackend()
        self._slots = MemorySlots()
        self._redis: RedisBackend | None = None
        self._leases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisLeases] = (
            weakref.WeakKeyDictionary()
        )
        self._resolved = False
        self._redis_retry_at = 0.0

    @property
    def rate_config(self) -> dict[NamespaceAndKey, str | RateLimitItem]:
        """Limits per key, mutable; a limit is parsed as it is stored, so a bad one fails right there."""
        return self._rate_config

    @rate_config.setter
    def rate_config(self, value: Mapping[NamespaceAndKey, str | RateLimitItem]) -> None:
        self._rate_config = RateConfig(value)

    # -- which store ---------------------------------------------------------------------------------

    def _primary(self) -> Backend:
        """Resolved on first use (env ``REDIS_URL`` is read then), fixed afterwards."""
        if not self._resolved:
            url = None if self.use_in_memory else (self._redis_url or redis_url_from_env())
            if url is not None:
                self._redis = RedisBackend(url, timeout=self.redis_timeout)
            self._resolved = True
        return self._redis or self._memory

    def _active(self) -> Backend:
        primary = self._primary()
        if primary is self._redis and self.fallback_to_memory and time.monotonic() < self._redis_retry_at:
            return self._memory
        return primary

    @property
    def storage(self) -> str:
        """``"redis"`` or ``"memory"``: the store acquisitions go to now."""
        return self._active().name

    @property
    def redis_url(self) -> str | None:
        self._primary()
        return self._redis.url if self._redis else None

    async def _attempt(self, operation: Callable[[Backend], Awaitable[_T]]) -> tuple[Backend, _T]:
        backend = self._active()
        try:
            return backend, await operation(backend)
        except RedisUnavailableError as exc:
            if not self.fallback_to_memory:
                raise
            logger.warning("%s; limiting in this process only for the next %g s", exc, FALLBACK_RETRY_SECONDS)
            self._redis_retry_at = time.monotonic() + FALLBACK_RETRY_SECONDS
            return self._memory, await operation(self._memory)

    def _spec_for(
        self, namespace_and_key: NamespaceAndKey, rate_limit: str | RateLimitItem | None
    ) -> WindowSpec | None:
        if rate_limit is None:
            if type(namespace_and_key) is not tuple:
                namespace_and_key = tuple(namespace_and_key)  # type: ignore[assignment]
            config = self.rate_config
            rate_limit = config.get(namespace_and_key)
            if rate_limit is None:
                # (namespace, MATCH_ALL): one limit for each key of the namespace (fhlmi's lookup)
                rate_limit = config.get((namespace_and_key[0], MATCH_ALL)) if config else None  # type: ignore[arg-type]
                if rate_limit is None:
                    return None
        return parse_rate_limit(rate_limit)

    def limit_for(
        self, namespace_and_key: NamespaceAndKey, rate_limit: str | RateLimitItem | None = None
    ) -> int | None:
        """The count allowed per period for this key (``rate_limit`` first, then :attr:`rate_config`)."""
        spec = self._spec_for(namespace_and_key, rate_limit)
        return None if spec is None else spec.amount

    # -- the public operations -----------------------------------------------------------------------

    async def try_acquire(
        self,
        namespace_and_key: NamespaceAndKey,
        rate_limit: str | RateLimitItem | None = None,
        weight: float = 1,
        acquire_timeout: float | None = None,
        *,
        machine_id: int = 0,
        raise_impossible_limits: bool = False,
    ) -> float:
        """Wait until ``weight`` units fit in the key's window, then count them from the moment of return.

        ``rate_limit`` overrides :attr:`rate_config` (an exact ``(namespace, key)`` entry, else
        ``(namespace, MATCH_ALL)``: that limit for each key); with neither, returns at once. Waiters are
        served first come, first served (also across processes sharing Redis) and sleep until their turn.
        A namespace starting with ``get`` counts per host and ``machine_id`` (fhlmi's web keys, see
        :mod:`lmi.rate_limiter.web`). ``raise_impossible_limits``: a weight the limit can never hold
        raises ``ValueError`` (fhlmi's) instead of :class:`RateLimitTimeout`.

        Returns the Unix time (store clock) from which the units count; pass it as ``charged_at`` to
        :meth:`adjust` to settle this charge. :meth:`reserve` does the same and returns a handle that
        settles or cancels exactly this charge.

        Raises:
            ValueError: ``weight`` not a number > 0 (0, negative, NaN, infinite, a bool), or an unusable
                limit (the message names it).
            RateLimitTimeout: (a ``TimeoutError``) at once if ``weight`` exceeds the limit; otherwise
                after ``acquire_timeout`` seconds (default env ``RATE_LIMITER_TIMEOUT``, else 60) when
                the units could not be counted before then.
            RedisUnavailableError: Redis did not answer within ``redis_timeout`` (unless
                ``fallback_to_memory``).
        """
        if is_web(namespace_and_key[0]):
            namespace_and_key, configured = web_key(*namespace_and_key, machine_id, self.rate_config)
            rate_limit = rate_limit if rate_limit is not None else configured
        if raise_impossible_limits:
            spec = self._spec_for(namespace_and_key, rate_limit)
            if spec is not None and whole_weight(weight) > spec.amount:
                raise ValueError(
                    f"Rate limit {namespace_and_key}: weight {weight} can never fit in {spec.amount} "
                    f"per {spec.multiples} {spec.granularity}(s)"
                )
        return (await self.reserve(namespace_and_key, rate_limit, weight, acquire_timeout)).at

    async def reserve(
        self,
        namespace_and_key: NamespaceAndKey,
        rate_limit: str | RateLimitItem | None = None,
        weight: float = 1,
        acquire_timeout: float | None = None,
        *,
        latency: float = 0.0,
    ) -> Reservation:
        """Like :meth:`try_acquire`, but returns the :class:`Reservation`: counted from its ``at``, to be
        settled to the units actually used (``await r.settle(n)``) or cancelled (``await r.cancel()``)
        when the use never happened. Settling and cancelling touch this reservation's entry only.

        ``latency``: seconds the use may take, after this returns, to reach whoever counts it (a request
        on its way to a provider). The units count from that much later, so the limit holds at the
        receiving end as long as the use arrives within it.
        """
        if not (latency >= 0 and math.isfinite(latency)):
            raise ValueError(f"Rate limit latency must be a finite number of seconds >= 0, got {latency!r}")
        units = whole_weight(weight)
        spec = self._spec_for(namespace_and_key, rate_limit)
        if spec is None:
            return Reservation(None, None, namespace_and_key, units, time.time(), None)
        namespace, key = namespace_and_key
        if units > spec.amount:
            raise RateLimitTimeout(
                f"Rate limit {namespace}/{key}: weight {units} can never fit in {spec.amount} "
                f"per {spec.multiples} {spec.granularity}(s)"
            )
        timeout = acquire_timeout_seconds(acquire_timeout)
        started = time.monotonic()
        backend = self._active()
        if backend is self._memory:  # nothing to fall back from: skip the indirection
            grant = await backend.acquire(namespace, key, spec, units, timeout, latency)
        else:
            backend, grant = await self._attempt(
                lambda store: store.acquire(namespace, key, spec, units, timeout, latency)
            )
        if not grant.granted:
            await self._timed_out(namespace, key, spec, units, grant.wait, timeout, started)
        recounted = False
        try:
            while True:
                if grant.wait > 0:  # our turn is reserved: sleep until it, then count from the wake-up
                    # `at` is when the units count; we proceed `latency` before. Deadlines come from `at`
                    # alone (not "now + wait", which shifts by however late this line runs), so turns
                    # wake in queue order; a store that finds us early says how much longer to sleep.
                    await sleep_until(backend.monotonic(grant.at) - latency)
                elif recounted or _lateness(backend, grant, latency) <= backend.release_guard / 2:
                    break
                else:  # released well after our stamp (a busy loop, a process waiting for a core, a slow
                    recounted = True  # answer): count once more from now, where the caller proceeds
                grant = await backend.commit(namespace, key, spec, grant, units, latency)
                if grant.wait > timeout - (time.monotonic() - started):  # placed again, too late
                    await backend.release(namespace, key, spec, grant, units)
                    await self._timed_out(namespace, key, spec, units, grant.wait, timeout, started)
        except BaseException:  # cancelled or failed while waiting: hand the reserved turn back
            with contextlib.suppress(Exception):
                await backend.release(namespace, key, spec, grant, units)
            raise
        return Reservation(backend, spec, namespace_and_key, units, grant.at, grant, latency)

    @staticmethod
    async def _timed_out(
        namespace: str, key: str, spec: WindowSpec, units: int, wait: float, allowed: float, started: float
    ) -> NoReturn:
        # Turns are first come, first served, so waiting cannot bring ours sooner; we still wait out the
        # timeout so that callers retrying on timeout do not spin.
        await asyncio.sleep(max(0.0, allowed - (time.monotonic() - started)))
        raise RateLimitTimeout(
            f"Rate limit {namespace}/{key} ({spec.amount} per {spec.multiples} {spec.granularity}(s)): "
            f"weight {units} would fit only in {wait:.2f} s, beyond the {allowed:g} s timeout"
        )

    async def adjust(
        self,
        namespace_and_key: NamespaceAndKey,
        delta: int,
        rate_limit: str | RateLimitItem | None = None,
        *,
        charged_at: float | None = None,
    ) -> None:
        """Correct what was charged, without waiting.

        A positive ``delta`` counts that many more units from now (it may exceed the limit; later
        acquirers then wait longer). A negative one releases up to ``-delta`` units still in the window,
        from its oldest entries and never from ones newer than ``charged_at`` (the value
        :meth:`try_acquire` returned; default now) so the limit stays exact. No limit: nothing to do.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValueError(f"Rate limit adjustment must be a whole number of units, got {delta!r}")
        spec = self._spec_for(namespace_and_key, rate_limit)
        if spec is None or delta == 0:
            return
        namespace, key = namespace_and_key
        await self._attempt(lambda store: store.adjust(namespace, key, spec, delta, charged_at))

    def _configured_specs(self) -> dict[NamespaceAndKey, WindowSpec]:
        """Every configured limit, parsed: the windows' limits as status and fhlmi's listings report them."""
        return {pair: parse_rate_limit(value) for pair, value in list(self.rate_config.items())}

    async def rate_limit_status(self) -> dict[NamespaceAndKey, RateLimitStatus]:
        """Usage of every configured or used window: ``{(namespace, key): RateLimitStatus}``.

        A configured window is measured with its configured limit; others with the limit they were last
        used with.
        """
        configured = self._configured_specs()
        _, states = await self._attempt(lambda store: store.windows(configured))
        now = time.time()
        chosen = {(state.namespace, state.key): state for state in states}
        for pair, spec in configured.items():
            chosen.setdefault(pair, WindowState(pair[0], pair[1], spec, 0, now))
        return {
            pair: RateLimitStatus(
                period_start=int(state.period_start),  # whole seconds, as the seed shows it
                n_items_in_period=state.used,
                period_seconds=state.spec.period_seconds,
                period_name=state.spec.granularity,
                period_cap=state.spec.amount,
            )
            for pair, state in chosen.items()
        }

    def concurrency(
        self,
        namespace_and_key: NamespaceAndKey,
        limit: int,
        *,
        lease: float = DEFAULT_LEASE_SECONDS,
        acquire_timeout: float | None = None,
    ) -> ConcurrencySlot:
        """``async with limiter.concurrency(key, n):`` — at most ``n`` holders of ``key`` at once.

        With Redis the limit holds across processes through leases of ``lease`` seconds, renewed while
        held: a process that dies without releasing (``kill -9``) holds its slot until its lease
        expires, no longer. Waiters are served in arrival order within a process and woken by releases
        (no polling). Raises ``ValueError`` naming a ``limit`` < 1 or a ``lease`` <= 0,
        :class:`RateLimitTimeout` after ``acquire_timeout`` (default as for :meth:`try_acquire`) and
        :class:`RedisUnavailableError` as :meth:`try_acquire` does.
        """
        limit, lease = check_concurrency(limit, lease)
        pair = (namespace_and_key[0], namespace_and_key[1])

        async def acquire() -> Callable[[], Awaitable[None]]:
            timeout = acquire_timeout_seconds(acquire_timeout)
            backend = self._active()
            if backend is self._redis:
                loop = asyncio.get_running_loop()  # pub/sub connections belong to one loop
                leases = self._leases.get(loop)
                if leases is None:
                    leases = self._leases[loop] = RedisLeases(self._redis)
                try:
                    return await leases.acquire(pair, limit, lease, timeout)
                except RedisUnavailableError as exc:
                    if not self.fallback_to_memory:
                        raise
                    logger.warning("%s; limiting concurrency in this process only", exc)
                    self._redis_retry_at = time.monotonic() + FALLBACK_RETRY_SECONDS
            return await self._slots.acquire(pair, limit, timeout)

        return ConcurrencySlot(acquire)

    async def aclose(self) -> None:
        """Close the Redis connections this event loop opened (the limiter stays usable)."""
        leases = self._leases.pop(asyncio.get_running_loop(), None)
        if leases is not None:
            await leases.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    def __repr__(self) -> str:
        if self._resolved:  # in use: the store acquisitions go to now (not re-deciding it here)
            active = self._active()
            where = redacted(self._redis.url) if active is self._redis and self._redis else "memory"
        elif self._redis_url:
            where = redacted(self._redis_url)
        else:  # not used yet: REDIS_URL is read at the first acquisition, so it is not known
            where = "memory" if self.use_in_memory else "REDIS_URL or memory"
        return f"{type(self).__name__}(storage={where!r}, limits={len(self.rate_config)})"


def _lateness(backend: Backend, grant: Grant, latency: float) -> float:
    """Seconds between the moment ``grant`` counts its caller released and now."""
    return time.monotonic() - (backend.monotonic(grant.at) - latency)


GLOBAL_LIMITER = GlobalRateLimiter()
"""The limiter LiteLLMModel and LiteLLMEmbeddingModel use; resolves its store on first use."""
