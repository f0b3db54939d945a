"""The Redis store: one cache shared by processes and machines, with single flight across them.

Layout under ``lmi:cache:v1:`` — ``e:<key>`` a hash (``v`` the value, ``c`` its cost), ``lru`` and
``created`` sorted sets of entry names (scored by last use and by creation, in ms), ``sizes`` a hash of
entry sizes, ``stats`` a hash (``bytes``, ``hits``, ``saved_usd``). Each operation is one Lua script: one
round trip, atomic. Past the size cap the least recently used entries go, inside the script that stored
the new one; a TTL is Redis's own expiry on the entry.

Single flight: the first process to ``SET NX`` ``lock:<key>`` makes the call and keeps the lock alive while
it does; the others add themselves to ``waiters:<key>`` and block on a list of their own (``BLPOP``),
which the leader pushes to when it has stored the answer or given up. A leader that dies stops renewing
its lock, which expires: the waiters then compete to lead. Nobody polls.

An unreachable Redis never fails a call: the store warns once and acts as an empty cache until Redis
answers again (it retries after ``RETRY_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import warnings
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from lmi.cache.errors import CacheError
from lmi.cache.store import NO_LEASE, CacheStats, CacheStore, Entry, Item, Lease
from lmi.rate_limiter.parsing import redacted

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

PREFIX: Final = "lmi:cache:v1:"
LOCK_MS: Final = 15_000  # a leader renews its lock every third of this; a dead one's expires
WAIT_SECONDS: Final = 4  # at most one BLPOP (below the socket timeout), or until the lock would expire
RETRY_SECONDS: Final = 30.0  # after Redis failed, how long to act as an empty cache before trying again
SOCKET_TIMEOUT: Final = 5.0
CLEAR_BATCH: Final = 1000


class CacheUnavailableWarning(UserWarning):
    """The response cache's Redis cannot be reached: calls go to the provider uncached."""


_GET = """
local lru, stats, sizes, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out, hits, saved = {}, 0, 0
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'v', 'c')
  if v[1] then
    out[i] = v
    redis.call('ZADD', lru, 'XX', now, key)
    hits = hits + 1
    saved = saved + tonumber(v[2])
  else
    out[i] = false
    local size = redis.call('HGET', sizes, key)
    if size then  -- expired by its TTL: forget it everywhere
      redis.call('ZREM', lru, key)
      redis.call('ZREM', ARGV[5], key)
      redis.call('HDEL', sizes, key)
      redis.call('HINCRBY', stats, 'bytes', -tonumber(size))
    end
  end
end
if hits > 0 then
  redis.call('HINCRBY', stats, 'hits', hits)
  redis.call('HINCRBYFLOAT', stats, 'saved_usd', string.format('%.17g', saved))
end
return out
"""

_PUT = """
local key, lru, stats, sizes, created = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, ttl, cap = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local old = redis.call('HGET', sizes, key)
if old then redis.call('HINCRBY', stats, 'bytes', -tonumber(old)) end
redis.call('HSET', key, 'v', ARGV[5], 'c', ARGV[6])
if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
redis.call('ZADD', lru, now, key)
redis.call('ZADD', created, now, key)
redis.call('HSET', sizes, key, ARGV[7])
local total = redis.call('HINCRBY', stats, 'bytes', ARGV[7])
if cap > 0 then
  while total > cap do
    local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
    if (not oldest) or oldest == key then break end
    redis.call('ZREM', lru, oldest)
    redis.call('ZREM', created, oldest)
    redis.call('DEL', oldest)
    local size = redis.call('HGET', sizes, oldest)
    redis.call('HDEL', sizes, oldest)
    if size then total = redis.call('HINCRBY', stats, 'bytes', -tonumber(size)) end
  end
end
return total
"""

_REMOVE = """
local lru, stats, sizes, created = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for _, key in ipairs(KEYS) do
  redis.call('DEL', key)
  redis.call('ZREM', lru, key)
  redis.call('ZREM', created, key)
  local size = redis.call('HGET', sizes, key)
  if size then
    redis.call('HDEL', sizes, key)
    redis.call('HINCRBY', stats, 'bytes', -tonumber(size))
  end
end
return #KEYS
"""

# A would-be waiter: register, then see whether waiting is needed at all (answer stored, or lock gone).
_WAIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return math.max(redis.call('PTTL', KEYS[2]), 0)
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local waiters = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
for _, waiter in ipairs(waiters) do
  redis.call('RPUSH', ARGV[2] .. waiter, '1')
  redis.call('PEXPIRE', ARGV[2] .. waiter, ARGV[3])
end
return #waiters
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _Connection:
    """One event loop's client and its registered scripts."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.get = client.register_script(_GET)
        self.put = client.register_script(_PUT)
        self.remove = client.register_script(_REMOVE)
        self.wait = client.register_script(_WAIT)
        self.release = client.register_script(_RELEASE)
        self.renew = client.register_script(_RENEW)


class RedisStore(CacheStore):
    def __init__(self, url: str, *, max_bytes: int | None, ttl_seconds: float | None) -> None:
        self.url = url
        self.location = redacted(url)
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection]
        self._connections = weakref.WeakKeyDictionary()
        self._down_until = 0.0
        self._warned = False
        self._lists = tuple(PREFIX + name for name in ("lru", "stats", "sizes", "created"))

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    # -- connection and failure handling ----------------------------------------------------------------

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            from redis.asyncio import Redis

            client = Redis.from_url(
                self.url, socket_connect_timeout=1.0, socket_timeout=SOCKET_TIMEOUT, retry_on_timeout=False
            )
            connection = self._connections[loop] = _Connection(client)
        return connection

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        """Act as an empty cache for a while; say so once per outage."""
        self._down_until = time.monotonic() + RETRY_SECONDS
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"Response cache at {self.location} is unreachable ({type(exc).__name__}: {exc}); "
                f"calls go to the provider uncached until it answers again",
                CacheUnavailableWarning,
                stacklevel=2,
            )

    def _recovered(self) -> None:
        if self._warned:
            self._warned = False
            logger.info("Response cache at %s answers again", self.location)

    @staticmethod
    def _unreachable(exc: BaseException) -> bool:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | asyncio.TimeoutError)

    async def _script(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script``; None (after the one warning) when Redis cannot be reached."""
        if not self._available():
            return None
        try:
            result = await script(keys=list(keys), args=list(args))
        except Exception as exc:
            if self._unreachable(exc):
                self._failed(exc)
                return None
            raise CacheError(f"Response cache at {self.location}: {type(exc).__name__}: {exc}") from exc
        self._recovered()
        return result

    # -- the store ---------------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        if not keys:
            return {}
        names = [PREFIX + "e:" + key for key in keys]
        lru, stats, sizes, created = self._lists
        now = int(time.time() * 1000)
        rows = await self._script(self._connection().get, names, [lru, stats, sizes, now, created])
        if rows is None:
            return {}
        return {key: Entry(bytes(row[0]), float(row[1])) for key, row in zip(keys, rows, strict=True) if row}

    async def put_many(self, items: Sequence[Item]) -> None:
        lru, stats, sizes, created = self._lists
        ttl = int(self.ttl_seconds * 1000) if self.ttl_seconds is not None else 0
        cap = self.max_bytes or 0
        script = self._connection().put
        for item in items:
            size = len(item.value) + len(item.key)
            now = int(time.time() * 1000)
            args = [lru, stats, sizes, created, item.value, repr(item.cost_usd), size, now, ttl, cap]
            if await self._script(script, [PREFIX + "e:" + item.key], args) is None:
                return

    async def count_hits(self, hits: int, saved_usd: float) -> None:
        if not self._available():
            return
        stats = self._lists[1]
        try:
            pipeline = self._connection().client.pipeline(transaction=True)
            pipeline.hincrby(stats, "hits", hits)
            pipeline.hincrbyfloat(stats, "saved_usd", saved_usd)
            await pipeline.execute()
        except Exception as exc:
            if not self._unreachable(exc):
                raise CacheError(f"Response cache at {self.location}: {exc}") from exc
            self._failed(exc)

    async def stats(self) -> CacheStats:
        lru, stats, _, _ = self._lists
        client = self._connection().client
        try:
            entries = await client.zcard(lru)
            values = await client.hmget(stats, ["bytes", "hits", "saved_usd"])
        except Exception as exc:
            raise CacheError(f"Response cache at {self.location}: {type(exc).__name__}: {exc}") from exc
        size, hits, saved = (value or 0 for value in values)
        return CacheStats(
            self.location, int(entries), int(size), int(hits), float(saved), self.max_bytes, self.ttl_seconds
        )

    async def clear(self, older_than_seconds: float | None = None) -> int:
        lru, stats, sizes, created = self._lists
        connection = self._connection()
        cutoff = "+inf" if older_than_seconds is None else (time.time() - older_than_seconds) * 1000
        removed = 0
        try:
            while True:
                names = await connection.client.zrangebyscore(
                    created, "-inf", f"({cutoff}", start=0, num=CLEAR_BATCH
                )
                if not names:
                    break
                keys = [name.decode() if isinstance(name, bytes) else str(name) for name in names]
                removed += await connection.remove(keys=keys, args=[lru, stats, sizes, created])
        except CacheError:
            raise
        except Exception as exc:
            raise CacheError(f"Response cache at {self.location}: {type(exc).__name__}: {exc}") from exc
        return removed

    async def lease(self, key: str) -> Lease | Entry:
        if not self._available():
            return NO_LEASE
        lock, waiters = PREFIX + "lock:" + key, PREFIX + "waiters:" + key
        connection = self._connection()
        token = uuid.uuid4().hex
        try:
            while True:
                if await connection.client.set(lock, token, nx=True, px=LOCK_MS):
                    lease = _RedisLease(self, connection, lock, waiters, token)
                    entry = await self.get(key)  # stored by a leader that finished since our lookup?
                    if entry is None:
                        return lease
                    await lease.release()
                    return entry
                waiter = uuid.uuid4().hex
                state = await connection.wait(
                    keys=[PREFIX + "e:" + key, lock, waiters], args=[waiter, LOCK_MS * 2]
                )
                if state >= 0:  # registered: the leader wakes us when it is done, or its lock expires
                    timeout = max(1, min(WAIT_SECONDS, math.ceil(state / 1000)))  # state: the lock's ms left
                    await connection.client.blpop([PREFIX + "wake:" + waiter], timeout=timeout)
                if state != -2:  # unless the lock was gone: the entry may be there
                    entry = await self.get(key)
                    if entry is not None:
                        return entry
        except Exception as exc:
            if not self._unreachable(exc):
                raise CacheError(f"Response cache at {self.location}: {type(exc).__name__}: {exc}") from exc
            self._failed(exc)
            return NO_LEASE

    async def aclose(self) -> None:
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        if connection is not None:
            await connection.client.aclose()


class _RedisLease(Lease):
    """A held lock: renewed in the background until released, then waiters are woken."""

    def __init__(
        self, store: RedisStore, connection: _Connection, lock: str, waiters: str, token: str
    ) -> None:
        self.store, self.connection = store, connection
        self.lock, self.waiters, self.token = lock, waiters, token
        self._renewal = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LOCK_MS / 3000)
            with contextlib.suppress(Exception):  # a missed renewal at worst lets a waiter lead too
                await self.connection.renew(keys=[self.lock], args=[self.token, LOCK_MS])

    async def release(self) -> None:
        self._renewal.cancel()
        args = [self.token, PREFIX + "wake:", LOCK_MS * 2]
        await asyncio.shield(self.store._script(self.connection.release, [self.lock, self.waiters], args))


__all__ = ["CacheUnavailableWarning", "RedisStore"]
