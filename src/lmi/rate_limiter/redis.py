"""The Redis store: the algorithm of :mod:`lmi.rate_limiter.backend` as one atomic Lua script.

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

_SCRIPT = """
local entries, meta = KEYS[1], KEYS[2]
local op, cap, period = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local BATCH = 128

-- An entry is "<at>:<weight>:<id>", with a negative id while its caller has not been released yet.
local function parse(entry)
  local ts, w, id = string.match(entry, '^(%d+):(%d+):(-?%d+)$')
  return tonumber(ts), tonumber(w), tonumber(id)
end

local function fmt(ts, w, id)
  return string.format('%d:%d:%d', ts, w, id)
end

-- Drop the entries that left the window; returns the sum of those that remain.
local function trim()
  local sum = tonumber(redis.call('HGET', meta, 'sum') or '0')
  local horizon = now - period
  local head = redis.call('LINDEX', entries, 0)
  if not head then return 0 end
  if parse(head) > horizon then return sum end
  while true do
    local batch = redis.call('LRANGE', entries, 0, BATCH - 1)
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

-- Nil when the window ending at `finish` holds at most `room` units of the entries no newer than
-- `finish` (entry `skip` aside); else the time at which the entry that blocks it leaves the window.
local function blocked_until(finish, room, skip)
  local horizon, counted, last = finish - period, 0, -1
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      local ts, w, id = parse(batch[i])
      if ts <= finish and math.abs(id) ~= skip then
        if ts <= horizon then return nil end
        if counted + w > room then return ts + period end
        counted = counted + w
      end
    end
    if #batch < BATCH then return nil end
    last = last - BATCH
  end
end

-- The entry `id` stamped `at`: its index from the end, its weight and its text (nil when it is gone).
local function find(id, at)
  local last, index = -1, 0
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      index = index - 1
      local ts, w, eid = parse(batch[i])
      if math.abs(eid) == id and ts == at then return index, w, batch[i], eid end
      if ts < at then return nil end
    end
    if #batch < BATCH then return nil end
    last = last - BATCH
  end
end

-- Insert in time order, scanning from the end (where new entries belong).
local function insert(at, w, id)
  local entry, last = fmt(at, w, id), -1
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      if parse(batch[i]) <= at then
        if last == -1 and i == #batch then
          redis.call('RPUSH', entries, entry)
        else
          redis.call('LINSERT', entries, 'AFTER', batch[i], entry)
        end
        return
      end
    end
    if #batch < BATCH then
      redis.call('LPUSH', entries, entry)
      return
    end
    last = last - BATCH
  end
end

local function expire()
  local last = redis.call('LINDEX', entries, -1)
  local newest = now
  if last then newest = math.max(parse(last), now) end
  local ttl = math.floor((newest + period - now) / 1000) + 1000
  redis.call('PEXPIRE', entries, ttl)
  redis.call('PEXPIRE', meta, ttl)
end

-- The earliest time >= max(now, last entry) at which `weight` fits: first come, first served.
local function place(sum, weight)
  local start = now
  local last = redis.call('LINDEX', entries, -1)
  if last then
    local ts = parse(last)
    if ts >= now then start = ts + 1 end  -- strictly after: wake-ups keep the order of the queue
  end
  if sum + weight <= cap then return start end
  return blocked_until(start, cap - weight, -1) or start
end

local function record(at, weight, sum)
  local id = redis.call('HINCRBY', meta, 'seq', 1)
  local stored = id
  if at > now then stored = -id end  -- a reservation, until its caller commits
  redis.call('RPUSH', entries, fmt(at, weight, stored))
  redis.call('HSET', meta, 'sum', sum + weight, 'cap', cap, 'period', period, 'name', ARGV[4])
  expire()
  return id
end

-- Replies to acquire and commit: {status, wait µs, at µs, id}; status 1: recorded, 0: it would not fit
-- within max_wait (nothing recorded), 2: the caller's deadline had passed (nothing recorded).
if op == 'acquire' then
  local weight, max_wait, deadline = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  if deadline > 0 and now > deadline then return {2, 0, now, 0} end
  -- With a latency the caller's use counts from that much after its release, and whatever counts at
  -- its release counts against it: the window it is checked in grows by as much.
  now, period = now + tonumber(ARGV[8]), period + tonumber(ARGV[8])
  local sum = trim()
  local at = place(sum, weight)
  if at - now > max_wait then return {0, at - now, at, 0} end
  return {1, at - now, at, record(at, weight, sum)}
elseif op == 'commit' then
  local id, at, weight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  now, period = now + tonumber(ARGV[8]), period + tonumber(ARGV[8])
  -- A caller whose clock runs a little ahead of the server's woke early: it sleeps the rest (its turn
  -- stays reserved) rather than proceed before its time.
  if now < at then return {1, at - now, at, id} end
  local sum = trim()
  local index, w, text = find(id, at)
  if not index then  -- trimmed: its caller woke a whole period late; it queues again
    local again = place(sum, weight)
    return {1, again - now, again, record(again, weight, sum)}
  end
  local new_at = now
  if sum > cap then new_at = blocked_until(now, cap - w, id) or now end
  local stored = id
  if new_at > now then stored = -id end
  if new_at ~= at then
    redis.call('LREM', entries, -1, text)
    insert(new_at, w, stored)
    expire()
  else
    redis.call('LSET', entries, index, fmt(at, w, stored))
  end
  return {1, new_at - now, new_at, id}
elseif op == 'release' then
  local index, w, text = find(tonumber(ARGV[5]), tonumber(ARGV[6]))
  if not index then return 0 end
  redis.call('LREM', entries, -1, text)
  local sum = tonumber(redis.call('HGET', meta, 'sum') or '0') - w
  redis.call('HSET', meta, 'sum', math.max(sum, 0))
  return w
elseif op == 'settle' then
  local id, at, reserved, used = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local sum = trim()
  local index, w, _, stored = find(id, at)
  local current = w or reserved
  if used < current then
    if index then
      redis.call('LSET', entries, index, fmt(at, used, stored))
      redis.call('HSET', meta, 'sum', sum - (current - used))
    end
    return used - current
  end
  if used > current then
    local delta = used - current
    insert(now, delta, redis.call('HINCRBY', meta, 'seq', 1))
    redis.call('HSET', meta, 'sum', sum + delta, 'cap', cap, 'period', period, 'name', ARGV[4])
    expire()
  end
  return used - current
elseif op == 'adjust' then
  local delta, newest = tonumber(ARGV[5]), tonumber(ARGV[6])
  local sum = trim()
  if delta > 0 then
    insert(now, delta, redis.call('HINCRBY', meta, 'seq', 1))
    redis.call('HSET', meta, 'sum', sum + delta, 'cap', cap, 'period', period, 'name', ARGV[4])
    expire()
    return delta
  end
  if newest <= 0 or newest > now then newest = now end
  if newest <= now - period then return 0 end
  -- Oldest entries first: they leave the window no later than the charge being corrected.
  local wanted, index, done = -delta, 0, false
  while not done do
    local batch = redis.call('LRANGE', entries, index, index + BATCH - 1)
    for i = 1, #batch do
      local ts, w, id = parse(batch[i])
      if ts > newest or wanted == 0 then done = true break end
      if w > 0 then
        local taken = math.min(w, wanted)
        redis.call('LSET', entries, index + i - 1, fmt(ts, w - taken, id))
        wanted = wanted - taken
      end
    end
    if #batch < BATCH then done = true end
    index = index + BATCH
  end
  local released = -delta - wanted
  if released > 0 then redis.call('HSET', meta, 'sum', sum - released) end
  return -released
elseif op == 'status' then
  -- period 0: measure with the limit last used
  if period <= 0 then period = tonumber(redis.call('HGET', meta, 'period') or '0') end
  local horizon, used, oldest, last = now - period, 0, now, -1
  local done = false
  while not done do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      local ts, w, id = parse(batch[i])
      if ts <= horizon then done = true break end
      if id > 0 then  -- committed (a caller's latency may stamp it a moment ahead); not reservations
        used = used + w
        oldest = math.min(ts, now)
      end
    end
    if #batch < BATCH then done = true end
    last = last - BATCH
  end
  local stored = redis.call('HMGET', meta, 'cap', 'name')
  return {used, oldest, tonumber(stored[1] or '0'), stored[2] or ''}
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


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
        return await self.run_script(_SCRIPT, _SCRIPT_SHA, keys, args)

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
            raise self._unavailable(exc) from exc

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
            raise self._unavailable(exc) from exc
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
