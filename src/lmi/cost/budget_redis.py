"""A budget kept in Redis, shared by every process using its key: one atomic script per operation.

Three keys share a hash tag (one cluster slot): ``lmi:budget:{<key>}:s``, a hash with ``spent``,
``reserved`` and the ``limit`` last reserved against (nano-USD); ``...:a``, a hash of open reservations
and their amounts; ``...:l``, a sorted set of the same reservations by lease expiry (server clock, ms).
Every operation first releases the reservations whose lease ran out: those of processes that died
mid-call. A live process renews the leases of its calls in flight every third of a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from lmi.rate_limiter.parsing import redacted

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "lmi:budget:"
_SCRIPT = """
-- Amounts are whole nano-USD, written as the strings they arrive as (Lua would print large ones as 1e+15).
local state, amounts, leases = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
for i = 1, #gone do
  local amount = redis.call('HGET', amounts, gone[i])
  if amount then
    redis.call('HINCRBY', state, 'reserved', '-' .. amount)
    redis.call('HDEL', amounts, gone[i])
  end
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', leases, '-inf', now) end

local function get(field)
  return tonumber(redis.call('HGET', state, field) or '0')
end

if op == 'reserve' then
  local id, amount, limit, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  redis.call('HSET', state, 'limit', ARGV[4])
  local spent, reserved = get('spent'), get('reserved')
  if spent + reserved + amount > limit then
    local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
    local wake = -1
    if first[2] then wake = tonumber(first[2]) - now end
    return {0, spent, reserved, wake}
  end
  redis.call('HINCRBY', state, 'reserved', ARGV[3])
  redis.call('HSET', amounts, id, ARGV[3])
  redis.call('ZADD', leases, now + lease, id)
  return {1, spent, reserved + amount, -1}
elseif op == 'settle' then
  local id, cost = ARGV[2], tonumber(ARGV[3])
  local amount = redis.call('HGET', amounts, id)
  if amount then
    redis.call('HINCRBY', state, 'reserved', '-' .. amount)
    redis.call('HDEL', amounts, id)
    redis.call('ZREM', leases, id)
  end
  if cost > 0 then redis.call('HINCRBY', state, 'spent', ARGV[3]) end
  redis.call('PUBLISH', state .. ':settled', 1)  -- wakes the callers waiting for room
  return 1
elseif op == 'renew' then
  local lease = tonumber(ARGV[2])
  for i = 3, #ARGV do redis.call('ZADD', leases, 'XX', now + lease, ARGV[i]) end
  return 1
elseif op == 'status' then
  local limit = redis.call('HGET', state, 'limit')
  return {get('spent'), get('reserved'), limit and tonumber(limit) or -1}
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


def budget_keys(key: str) -> tuple[str, str, str]:
    tag = f"{KEY_PREFIX}{{{quote(key, safe='')}}}"
    return f"{tag}:s", f"{tag}:a", f"{tag}:l"


def key_of(redis_key: str) -> str | None:
    """The budget key of a state key found in Redis; None for keys that are not budget states."""
    if redis_key.startswith(KEY_PREFIX + "{") and redis_key.endswith("}:s"):
        return unquote(redis_key[len(KEY_PREFIX) + 1 : -3])
    return None


class RedisBudgetStore:
    """The store of one budget key; one client per event loop, opened on first use."""

    def __init__(self, url: str, key: str, lease_seconds: float, timeout: float = 5.0) -> None:
        self.url, self.key, self.timeout = url, key, timeout
        self.lease_ms = max(int(lease_seconds * 1000), 1)
        self._keys = budget_keys(key)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._in_flight: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SettleListener] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from redis.asyncio import Redis

            client = self._clients[loop] = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return client

    async def _run(self, *args: Any) -> Any:
        from redis.exceptions import NoScriptError

        from lmi.rate_limiter.redis import RedisUnavailableError, _transport_errors

        client = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await client.evalsha(_SCRIPT_SHA, 3, *self._keys, *args)
                except NoScriptError:
                    return await client.eval(_SCRIPT, 3, *self._keys, *args)
        except _transport_errors() as exc:
            raise RedisUnavailableError(
                f"Budget {self.key!r} cannot use Redis at {redacted(self.url)} "
                f"({type(exc).__name__}: {exc}); no call was sent."
            ) from exc

    async def reserve(self, reservation: str, amount: int, limit: int) -> tuple[bool, int, int, float | None]:
        granted, spent, reserved, wake = await self._run("reserve", reservation, amount, limit, self.lease_ms)
        if granted:
            self._in_flight.add(reservation)
            self._keep_renewing()
        return bool(granted), int(spent), int(reserved), None if int(wake) < 0 else int(wake) / 1000

    async def settle(self, reservation: str, cost: int) -> None:
        self._in_flight.discard(reservation)
        await self._run("settle", reservation, cost)

    async def status(self) -> tuple[int, int, int | None]:
        spent, reserved, limit = await self._run("status")
        return int(spent), int(reserved), None if int(limit) < 0 else int(limit)

    async def watch(self) -> int:
        listener = self._listeners.get(asyncio.get_running_loop())
        if listener is None or listener.done():
            listener = self._listeners[asyncio.get_running_loop()] = _SettleListener(
                self._client(), self._keys[0] + ":settled"
            )
        await listener.started()
        return listener.settlements

    async def wait(self, seen: int, patience: float | None) -> None:
        await self._listeners[asyncio.get_running_loop()].wait(seen, patience)

    def _keep_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """While calls are in flight, extend their leases every third of a lease; then stop."""
        while self._in_flight:
            await asyncio.sleep(self.lease_ms / 3000)
            if self._in_flight:
                try:
                    await self._run("renew", self.lease_ms, *self._in_flight)
                except Exception:  # a missed renewal shortens a lease; the next one may succeed
                    continue


class _SettleListener:
    """Counts the settlements of one budget, published by the script, for callers waiting for room."""

    def __init__(self, client: Redis, channel: str) -> None:
        self.settlements = 0
        self._changed = asyncio.Condition()
        self._subscribed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen(client, channel))

    def done(self) -> bool:
        return self._task.done()

    async def started(self) -> None:
        if not self._subscribed.is_set():
            await asyncio.wait(
                {asyncio.ensure_future(self._subscribed.wait()), self._task},
                timeout=5.0,
                return_when=asyncio.FIRST_COMPLETED,
            )

    async def wait(self, seen: int, patience: float | None) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.settlements != seen), patience)

    async def _listen(self, client: Redis, channel: str) -> None:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                if message.get("type") == "subscribe":
                    self._subscribed.set()
                elif message.get("type") == "message":
                    async with self._changed:
                        self.settlements += 1
                        self._changed.notify_all()
        except Exception:  # Redis went away: waiters fall back to their lease timeouts
            logger.warning("Lost the budget settlement channel %s", channel, exc_info=True)
        finally:
            self._subscribed.set()
            await pubsub.aclose()


async def redis_budget_status(url: str, key: str | None = None) -> list[tuple[str, int, int, int | None]]:
    """``(key, spent, reserved, limit)`` in nano-USD for ``key``, or for every budget in the server."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        if key is not None:
            keys = [key]
        else:
            keys = []
            async for raw in client.scan_iter(match=f"{KEY_PREFIX}*:s", count=500):
                found = key_of(raw.decode() if isinstance(raw, bytes) else raw)
                if found is not None:
                    keys.append(found)
        rows = []
        for name in sorted(keys):
            store = RedisBudgetStore(url, name, 1.0)
            store._clients[asyncio.get_running_loop()] = client
            spent, reserved, limit = await store.status()
            rows.append((name, spent, reserved, limit))
        return rows
    finally:
        await client.aclose()
