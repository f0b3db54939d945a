"""The Redis store: the algorithm of :mod:`lmi.rate_limiter.backend` as one atomic Lua script
(``window.lua``).

Per ``(namespace, key)`` two keys share a hash tag (so they live on one cluster slot), whatever the limit:

- ``lmi:rl:{<namespace>:<key>}:e`` — a list of ``"<unix µs>:<weight>:<id>"`` entries in time order, one
  per acquisition (a compact listpack: ~30 bytes per acquisition, whatever its weight);
- ``...:m`` — a hash with the running ``sum`` of those weights, the ``seq`` counter of entry ids, and
  the ``cap``, ``period`` and ``name`` of the limit last used (for the status of other processes).

Namespace and key are percent-encoded, so model names with ``/`` or ``:`` round-trip. Timestamps come
from the server's clock (``TIME``), so processes on different hosts agree. Both keys expire one period
after their last entry. The script is sent by SHA (``EVALSHA``), and in full only when the server does
not know it yet. ``redis`` is imported on first use, never at import.

Calls from one event loop go one at a time, in call order, over one connection: first come, first
served holds within a process too, from the first call on. An acquisition carries a deadline (the
caller's timeout, on the server's clock as last measured): a script the server runs only after the
caller gave up records nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

from lmi.exceptions import RedisUnavailableError
from lmi.rate_limiter.backend import Grant, WindowState
from lmi.rate_limiter.parsing import WindowSpec, redacted, window_spec_from

if TYPE_CHECKING:
    from redis.asyncio import Redis

KEY_PREFIX = "lmi:rl:"
_MICROS = 1_000_000
# Windows are kept this much longer than their period in Redis: a caller is released when the script's
# answer reaches it, a little after the server stamped its entry, and not equally late every time (its
# process may wait for a core). 1.5% of a one-second window, nothing of a minute.
RELEASE_GUARD_SECONDS = 0.015
_CLOCK_STEP_US = 5_000
_MAX_UNCERTAINTY_US = 20_000


@lru_cache(maxsize=1)
def window_script() -> tuple[str, str]:
    """The Lua script (``window.lua``, read on first use, never at import) and its SHA1."""
    text = resources.files("lmi.rate_limiter").joinpath("window.lua").read_text(encoding="utf-8")
    return text, hashlib.sha1(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning the server is unreachable or silent (not a bug in a command)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


@lru_cache(maxsize=1)
def _no_script_error() -> type[BaseException]:
    from redis.exceptions import NoScriptError

    return NoScriptError


@lru_cache(maxsize=4096)
def window_keys(namespace: str, key: str) -> tuple[str, str]:
    tag = f"{quote(namespace, safe='')}:{quote(key, safe='')}"
    return f"{KEY_PREFIX}{{{tag}}}:e", f"{KEY_PREFIX}{{{tag}}}:m"


def parse_window_key(redis_key: str) -> tuple[str, str] | None:
    """Inverse of :func:`window_keys` for the entries key; None for keys that are not ours."""
    if not (redis_key.startswith(KEY_PREFIX + "{") and redis_key.endswith("}:e")):
        return None
    parts = redis_key[len(KEY_PREFIX) + 1 : -3].split(":")
    if len(parts) != 2:
        return None
    return unquote(parts[0]), unquote(parts[1])


@lru_cache(maxsize=4096)
def _limit_name(spec: WindowSpec) -> str:
    return f"{spec.multiples} {spec.granularity}"


def _spec_from_stored(cap: int, name: str) -> WindowSpec | None:
    multiples, _, granularity = name.partition(" ")
    if cap <= 0 or not multiples.isdigit() or not granularity:
        return None
    return window_spec_from(cap, int(multiples), granularity)


class _LoopConnection:
    """A client for one event loop (redis.asyncio connections belong to the loop that opened them)."""

    __slots__ = ("client", "known_scripts", "turn")

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.known_scripts: set[str] = set()  # SHAs the server is known to hold
        # One call at a time, in call order (asyncio.Lock is FIFO): the server sees this process's
        # acquisitions in the order they were made, from the first call on (when the script loads).
        self.turn = asyncio.Lock()


class RedisBackend:
    """Moving windows in Redis, shared by every process that uses the same server."""

    name = "redis"
    release_guard = RELEASE_GUARD_SECONDS

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnection] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _LoopConnection] | None = None  # skips the lookup
        # The server's clock minus ours (µs), kept fixed unless it moves by more than a few ms, so that
        # reservations in one order wake in that order; also turns our deadlines into server time.
        self._clock_offset_us = 0
        self._clock_round_trip_us = 1 << 62
        self._deadline_offset_us = 0
        self._unix_to_monotonic = time.time() - time.monotonic()
        self.round_trips = 0  # script calls sent (for the benchmarks)
        self.last_sent = 0.0  # when the latest script call was written (after waiting for its turn)

    def _connection(self) -> _LoopConnection:
        loop = asyncio.get_running_loop()
        if self._last is not None and self._last[0] is loop:
            return self._last[1]
        connection = self._connections.get(loop)
        if connection is None:
            from redis.asyncio import ConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff

            pool = ConnectionPool.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One quick retry covers a pooled connection the server closed; more would only delay.
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
            )
            client = Redis(connection_pool=pool)
            connection = self._connections[loop] = _LoopConnection(client)
        self._last = (loop, connection)
        return connection

    @staticmethod
    def transport_errors() -> tuple[type[BaseException], ...]:
        return _transport_errors()

    def unavailable(self, exc: BaseException) -> RedisUnavailableError:
        from redis.exceptions import AuthenticationError

        if isinstance(exc, AuthenticationError):  # Redis answered: the password is wrong or missing
            return RedisUnavailableError(
                f"Rate limiter cannot use Redis at {redacted(self.url)}: it refused the credentials "
                f"({type(exc).__name__}: {exc})",
                "Fix the password in the Redis URL (REDIS_URL).",
            )
        return RedisUnavailableError(
            f"Rate limiter cannot use Redis at {redacted(self.url)} "
            f"(no answer within {self.timeout:g} s: {type(exc).__name__}: {exc})",
            "Start Redis, fix REDIS_URL, or pass fallback_to_memory=True to GlobalRateLimiter.",
        )

    async def _run(self, keys: tuple[str, str], *args: Any) -> Any:
        script, sha = window_script()
        return await self.run_script(script, sha, keys, args)

    async def run_script(self, script: str, sha: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """One round trip: ``script`` (sent by SHA once the server knows it) on ``keys`` with ``args``,
        in call order among this loop's calls, within ``timeout``."""
        connection = self._connection()
        try:
            async with asyncio.timeout(self.timeout), connection.turn:
                self.round_trips += 1
                self.last_sent = time.time()
                if sha in connection.known_scripts:
                    try:
                        return await connection.client.evalsha(sha, len(keys), *keys, *args)
                    except _no_script_error():  # the server lost it (restart, SCRIPT FLUSH)
                        connection.known_scripts.discard(sha)
                        self.last_sent = time.time()
                result = await connection.client.eval(script, len(keys), *keys, *args)  # also caches it
                connection.known_scripts.add(sha)
                return result
        except _transport_errors() as exc:
            raise self.unavailable(exc) from exc

    def client(self) -> Redis:
        """The running loop's client (for what is not a script: pub/sub, scans)."""
        return self._connection().client

    def deadline_offset_ms(self) -> int:
        """What to add to our Unix time (ms) to get the server's, erring low (see :meth:`acquire`)."""
        return self._deadline_offset_us // 1000

    @staticmethod
    def _args(op: str, spec: WindowSpec) -> tuple[Any, ...]:
        period = round((spec.period_seconds + RELEASE_GUARD_SECONDS) * _MICROS)
        return (op, spec.amount, period, _limit_name(spec))

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float, latency: float = 0.0
    ) -> Grant:
        keys = window_keys(namespace, key)
        max_wait_us = int(min(max_wait, 1e9) * _MICROS)  # "forever" (inf) as ~30 years
        for _ in range(2):
            sent = time.time()
            deadline = round((sent + self.timeout) * _MICROS) + self._deadline_offset_us
            status, wait, at, entry_id = await self._run(
                keys, *self._args("acquire", spec), weight, max_wait_us, deadline, round(latency * _MICROS)
            )
            received = round(time.time() * _MICROS)
            written = round(self.last_sent * _MICROS)
            server_now = int(at) if status == 2 else int(at - wait) - round(latency * _MICROS)
            # The script ran between `written` and `received`: measured against `received`, the offset
            # errs low, so the deadline the server sees is never later than the moment we give up.
            self._deadline_offset_us = server_now - received
            self._measured_offset(server_now - (written + received) // 2, received - written)
            if status != 2:
                break
            # Refused as past our deadline, yet answered in time: the offset was off; once more.
        else:
            raise RedisUnavailableError(f"Redis at {redacted(self.url)} keeps refusing our deadline")
        if status == 0:
            return Grant(False, wait / _MICROS, at / _MICROS)
        return Grant(True, wait / _MICROS, at / _MICROS, (int(entry_id), int(at)))

    def _measured_offset(self, offset_us: int, round_trip_us: int) -> None:
        """Keep the offset of the quickest round trip (the most precise), unless the clocks moved."""
        if (
            round_trip_us < self._clock_round_trip_us
            or abs(offset_us - self._clock_offset_us) > _CLOCK_STEP_US
        ):
            self._clock_offset_us, self._clock_round_trip_us = offset_us, round_trip_us

    def monotonic(self, at: float) -> float:
        """Our ``time.monotonic()`` at the server's Unix time ``at``, give or take half the quickest round
        trip: we aim that much later, so that a commit never reaches the server before its time (which
        would cost a round trip and could let a later turn overtake)."""
        uncertainty = min(self._clock_round_trip_us, _MAX_UNCERTAINTY_US) / 2
        return at - (self._clock_offset_us - uncertainty) / _MICROS - self._unix_to_monotonic

    async def commit(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int, latency: float = 0.0
    ) -> Grant:
        entry_id, at = cast(tuple[int, int], grant.token)
        _, wait, new_at, new_id = await self._run(
            window_keys(namespace, key),
            *self._args("commit", spec),
            entry_id,
            at,
            weight,
            round(latency * _MICROS),
        )
        if wait > 0 and new_at == at:  # we came early: the server's clock is behind our estimate of it
            server_now = int(new_at - wait) - round(latency * _MICROS)
            bound = server_now - round(self.last_sent * _MICROS)  # it ran after we wrote: offset <= bound
            self._clock_offset_us = min(self._clock_offset_us, bound)
        return Grant(True, wait / _MICROS, new_at / _MICROS, (int(new_id), int(new_at)))

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        if grant.token is None:
            return
        entry_id, at = cast(tuple[int, int], grant.token)
        await self._run(window_keys(namespace, key), *self._args("release", spec), entry_id, at)

    async def settle(
        self, namespace: str, key: str, spec: WindowSpec, grant: Grant, reserved: int, used: int
    ) -> None:
        entry_id, at = cast(tuple[int, int], grant.token)
        await self._run(
            window_keys(namespace, key), *self._args("settle", spec), entry_id, at, reserved, used
        )

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        newest = 0 if charged_at is None else max(1, round(charged_at * _MICROS))
        applied = await self._run(window_keys(namespace, key), *self._args("adjust", spec), delta, newest)
        return int(applied)

    async def windows(self, specs: Mapping[tuple[str, str], WindowSpec]) -> list[WindowState]:
        """Every window in the server, from any process (found with SCAN, read with the script)."""
        client = self.client()
        found: list[tuple[str, str]] = []
        try:
            async with asyncio.timeout(self.timeout):
                async for raw in client.scan_iter(match=f"{KEY_PREFIX}*:e", count=500):
                    parsed = parse_window_key(raw.decode() if isinstance(raw, bytes) else raw)
                    if parsed is not None:
                        found.append(parsed)
        except _transport_errors() as exc:
            raise self.unavailable(exc) from exc
        states = []
        for namespace, key in found:
            configured = specs.get((namespace, key))
            period = 0 if configured is None else configured.period_seconds * _MICROS
            used, oldest, cap, name = await self._run(window_keys(namespace, key), "status", 1, period, "")
            spec = configured or _spec_from_stored(
                int(cap), name.decode() if isinstance(name, bytes) else name
            )
            if spec is not None:
                states.append(WindowState(namespace, key, spec, int(used), oldest / _MICROS))
        return states

    async def aclose(self) -> None:
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        self._last = None
        if connection is not None:
            await connection.client.aclose()
            await connection.client.connection_pool.disconnect()
