"""The Redis store: the algorithm of :mod:`lmi.rate_limiter.backend` as one atomic Lua script.

Per window two keys share a hash tag (so they live on one cluster slot):

- ``lmi:rl:{<namespace>:<key>:<multiples>:<granularity>}:e`` — a list of ``"<unix µs>:<weight>"``
  entries in timestamp order, one per acquisition (a compact listpack: ~25 bytes per acquisition,
  whatever its weight);
- ``...:m`` — a hash with the running ``sum`` of those weights and the ``cap`` last used.

Namespace and key are percent-encoded, so model names with ``/`` or ``:`` round-trip. Timestamps come
from the server's clock (``TIME``), so processes on different hosts agree. Both keys expire one period
after their last entry. The script is sent by SHA (``EVALSHA``), and in full only when the server does
not know it yet. ``redis`` is imported on first use, never at import.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from lmi.exceptions import LMIError
from lmi.rate_limiter.backend import Grant, WindowState
from lmi.rate_limiter.parsing import WindowSpec, redacted, window_spec_from

if TYPE_CHECKING:
    from redis.asyncio import Redis

KEY_PREFIX = "lmi:rl:"
_MICROS = 1_000_000

_SCRIPT = """
local entries, meta = KEYS[1], KEYS[2]
local op, cap, period = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function parse(entry)
  local colon = string.find(entry, ':', 1, true)
  return tonumber(string.sub(entry, 1, colon - 1)), tonumber(string.sub(entry, colon + 1))
end

-- Drop the entries that left the window; returns the sum of those that remain.
local function trim()
  local sum = tonumber(redis.call('HGET', meta, 'sum') or '0')
  local horizon = now - period
  local head = redis.call('LINDEX', entries, 0)
  if not head then return 0 end
  if parse(head) > horizon then return sum end
  while true do
    local batch = redis.call('LRANGE', entries, 0, 127)
    local expired = 0
    for i = 1, #batch do
      local ts, w = parse(batch[i])
      if ts > horizon then break end
      sum = sum - w
      expired = i
    end
    if expired == 0 then break end
    redis.call('LTRIM', entries, expired, -1)
    if expired < #batch then break end
  end
  if redis.call('LLEN', entries) == 0 then sum = 0 end
  redis.call('HSET', meta, 'sum', sum)  -- kept in step with the list whoever trims it
  return sum
end

local function next_start()
  local last = redis.call('LINDEX', entries, -1)
  if last then
    local ts = parse(last)
    if ts > now then return ts end
  end
  return now
end

local function record(at, weight, sum)
  redis.call('RPUSH', entries, string.format('%d:%d', at, weight))
  redis.call('HSET', meta, 'sum', sum, 'cap', cap)
  local ttl = math.floor((at + period - now) / 1000) + 1000
  redis.call('PEXPIRE', entries, ttl)
  redis.call('PEXPIRE', meta, ttl)
end

if op == 'acquire' then
  local weight, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
  local sum = trim()
  local start = next_start()
  local at = start
  if sum + weight > cap then
    -- Walk back from the newest entry until the ones counted would leave no room for `weight`:
    -- the weight fits once that entry has left the window.
    local room, counted, horizon = cap - weight, 0, start - period
    local stop, last_index = false, -1
    while not stop do
      local batch = redis.call('LRANGE', entries, last_index - 127, last_index)
      for i = #batch, 1, -1 do
        local ts, w = parse(batch[i])
        if ts <= horizon then stop = true break end
        if counted + w > room then at = ts + period stop = true break end
        counted = counted + w
      end
      if #batch < 128 then stop = true end
      last_index = last_index - 128
    end
  end
  -- {wait, at} in µs; a negative wait means it would not fit in time and nothing was recorded.
  if at - now > max_wait then return {now - at, at} end
  record(at, weight, sum + weight)
  return {at - now, at}
elseif op == 'release' then
  local removed = redis.call('LREM', entries, -1, ARGV[4])
  if removed > 0 then
    local sum = tonumber(redis.call('HGET', meta, 'sum') or '0') - tonumber(ARGV[5])
    redis.call('HSET', meta, 'sum', math.max(sum, 0))
  end
  return removed
elseif op == 'adjust' then
  local delta, newest = tonumber(ARGV[4]), tonumber(ARGV[5])
  local sum = trim()
  if delta > 0 then
    record(next_start(), delta, sum + delta)
    return delta
  end
  if newest <= 0 or newest > now then newest = now end
  if newest <= now - period then return 0 end
  -- Oldest entries first: they leave the window no later than the charge being corrected.
  local wanted, index, done = -delta, 0, false
  while not done do
    local batch = redis.call('LRANGE', entries, index, index + 127)
    for i = 1, #batch do
      local ts, w = parse(batch[i])
      if ts > newest or wanted == 0 then done = true break end
      if w > 0 then
        local taken = math.min(w, wanted)
        redis.call('LSET', entries, index + i - 1, string.format('%d:%d', ts, w - taken))
        wanted = wanted - taken
      end
    end
    if #batch < 128 then done = true end
    index = index + 128
  end
  local released = -delta - wanted
  redis.call('HSET', meta, 'sum', sum - released)
  return -released
elseif op == 'status' then
  local sum = trim()
  local future, index = 0, -1
  while true do
    local entry = redis.call('LINDEX', entries, index)
    if not entry then break end
    local ts, w = parse(entry)
    if ts <= now then break end
    future = future + w
    index = index - 1
  end
  local head = redis.call('LINDEX', entries, 0)
  local oldest = now
  if head and parse(head) <= now then oldest = parse(head) end
  local stored_cap = tonumber(redis.call('HGET', meta, 'cap') or '0')
  return {sum - future, oldest, stored_cap}
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


class RedisUnavailableError(LMIError, ConnectionError):
    """Redis could not be reached (or did not answer) within the limiter's ``redis_timeout``.

    ``problem`` says what happened and ``hint`` what a Python caller can do, so that other front ends
    (the ``lmi`` command) can give their own advice.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem}. {hint}" if hint else problem)
        self.problem, self.hint = problem, hint


@lru_cache(maxsize=1)
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning the server is unreachable or silent (not a bug in a command)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


@lru_cache(maxsize=4096)
def window_keys(namespace: str, key: str, multiples: int, granularity: str) -> tuple[str, str]:
    tag = f"{quote(namespace, safe='')}:{quote(key, safe='')}:{multiples}:{granularity}"
    return f"{KEY_PREFIX}{{{tag}}}:e", f"{KEY_PREFIX}{{{tag}}}:m"


def parse_window_key(redis_key: str) -> tuple[str, str, int, str] | None:
    """Inverse of :func:`window_keys` for the entries key; None for keys that are not ours."""
    if not (redis_key.startswith(KEY_PREFIX + "{") and redis_key.endswith("}:e")):
        return None
    parts = redis_key[len(KEY_PREFIX) + 1 : -3].split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return unquote(parts[0]), unquote(parts[1]), int(parts[2]), parts[3]


class _LoopConnection:
    """A client for one event loop (redis.asyncio connections belong to the loop that opened them)."""

    __slots__ = ("client", "first_call", "script_known", "slots")

    def __init__(self, client: Redis, max_connections: int) -> None:
        self.client = client
        # Bounds the connections this loop opens; cheaper than redis-py's BlockingConnectionPool.
        self.slots = asyncio.Semaphore(max_connections)
        self.script_known = False
        # Until the server is known to hold the script, one call at a time goes first, so that a crowd
        # of first callers does not all hit NOSCRIPT and resend the script.
        self.first_call = asyncio.Lock()


class RedisBackend:
    """Moving windows in Redis, shared by every process that uses the same server."""

    name = "redis"

    def __init__(self, url: str, timeout: float = 5.0, max_connections: int = 8) -> None:
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnection] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _LoopConnection] | None = None  # skips the lookup

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
            connection = self._connections[loop] = _LoopConnection(client, self.max_connections)
        self._last = (loop, connection)
        return connection

    def _unavailable(self, exc: BaseException) -> RedisUnavailableError:
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
        connection = self._connection()
        try:
            async with asyncio.timeout(self.timeout), connection.slots:
                if connection.script_known:
                    return await self._call_script(connection, keys, args)
                async with connection.first_call:
                    return await self._call_script(connection, keys, args)
        except _transport_errors() as exc:
            raise self._unavailable(exc) from exc

    @staticmethod
    async def _call_script(connection: _LoopConnection, keys: tuple[str, str], args: tuple[Any, ...]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            result = await connection.client.evalsha(_SCRIPT_SHA, 2, *keys, *args)
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH): EVAL also caches it
            result = await connection.client.eval(_SCRIPT, 2, *keys, *args)
        connection.script_known = True
        return result

    async def acquire(
        self, namespace: str, key: str, spec: WindowSpec, weight: int, max_wait: float
    ) -> Grant:
        keys = window_keys(namespace, key, spec.multiples, spec.granularity)
        max_wait_us = int(min(max_wait, 1e9) * _MICROS)  # "forever" (inf) as ~30 years
        wait, at = await self._run(
            keys, "acquire", spec.amount, spec.period_seconds * _MICROS, weight, max_wait_us
        )
        if wait < 0:
            return Grant(False, -wait / _MICROS, at / _MICROS)
        # The token is the entry as the script wrote it, for LREM if the caller gives up.
        return Grant(True, wait / _MICROS, at / _MICROS, f"{at}:{weight}")

    async def release(self, namespace: str, key: str, spec: WindowSpec, grant: Grant, weight: int) -> None:
        keys = window_keys(namespace, key, spec.multiples, spec.granularity)
        await self._run(keys, "release", spec.amount, spec.period_seconds * _MICROS, grant.token, weight)

    async def adjust(
        self, namespace: str, key: str, spec: WindowSpec, delta: int, charged_at: float | None
    ) -> int:
        keys = window_keys(namespace, key, spec.multiples, spec.granularity)
        newest = 0 if charged_at is None else max(1, round(charged_at * _MICROS))
        applied = await self._run(keys, "adjust", spec.amount, spec.period_seconds * _MICROS, delta, newest)
        return int(applied)

    async def windows(self) -> list[WindowState]:
        """Every window in the server, from any process (found with SCAN, read with the script)."""
        client = self._connection().client
        found: list[tuple[str, str, int, str]] = []
        try:
            async with asyncio.timeout(self.timeout):
                async for raw in client.scan_iter(match=f"{KEY_PREFIX}*:e", count=500):
                    parsed = parse_window_key(raw.decode() if isinstance(raw, bytes) else raw)
                    if parsed is not None:
                        found.append(parsed)
        except _transport_errors() as exc:
            raise self._unavailable(exc) from exc
        states = []
        for namespace, key, multiples, granularity in found:
            keys = window_keys(namespace, key, multiples, granularity)
            probe = window_spec_from(1, multiples, granularity)
            used, oldest, cap = await self._run(keys, "status", 1, probe.period_seconds * _MICROS)
            spec = window_spec_from(int(cap), multiples, granularity) if int(cap) > 0 else probe
            states.append(WindowState(namespace, key, spec, int(used), oldest / _MICROS))
        return states

    async def aclose(self) -> None:
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        self._last = None
        if connection is not None:
            await connection.client.aclose()
            await connection.client.connection_pool.disconnect()
