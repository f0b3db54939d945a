"""In-flight limits: at most N holders of a key at once, in this process (memory) or across processes
(Redis leases that expire, so a process killed with ``kill -9`` holds its slot no longer than its lease).

Waiting is first come, first served within a process, without polling: a holder's release wakes the next
waiter (in another process through Redis pub/sub), and a waiter also wakes when the oldest lease would
expire. A Redis lease is renewed every third of its length while it is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lmi.exceptions import RateLimitTimeout

if TYPE_CHECKING:
    from lmi.rate_limiter.redis import RedisBackend

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
LEASE_PREFIX = "lmi:cc:"

_LEASE_SCRIPT = """
local leases, op = KEYS[1], ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)  -- expired leases: their holders are gone
local function keep(lease)
  if redis.call('PTTL', leases) < lease + 1000 then redis.call('PEXPIRE', leases, lease + 1000) end
end
if op == 'acquire' then
  local limit, lease, id, deadline = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  if deadline > 0 and now > deadline then return {2, 0} end  -- its caller gave up already
  if redis.call('ZCARD', leases) < limit then
    redis.call('ZADD', leases, now + lease, id)
    keep(lease)
    return {1, 0}
  end
  local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
elseif op == 'renew' then
  local lease = tonumber(ARGV[3])
  local renewed = redis.call('ZADD', leases, 'XX', 'CH', now + lease, ARGV[4])
  keep(lease)
  return renewed
elseif op == 'release' then
  local removed = redis.call('ZREM', leases, ARGV[4])
  redis.call('PUBLISH', ARGV[5], 'free')
  return removed
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""
LEASE_SCRIPT_SHA = hashlib.sha1(_LEASE_SCRIPT.encode()).hexdigest()


def check_concurrency(limit: object, lease: object) -> tuple[int, float]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"Concurrency limit must be a whole number >= 1, got {limit!r}")
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not (0 < lease < math.inf):
        raise ValueError(f"Concurrency lease must be a finite number of seconds > 0, got {lease!r}")
    return limit, float(lease)


class _Queue:
    """The waiters of one key in this process, in arrival order."""

    __slots__ = ("held", "limit", "waiters")

    def __init__(self) -> None:
        self.held = 0  # slots held (memory: all of them)
        self.limit = 1  # as the latest caller gave it
        self.waiters: deque[asyncio.Future[None]] = deque()

    def wake_head(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
                return


class MemorySlots:
    """In-flight counts kept in this process; a released slot is handed to the oldest waiter."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], _Queue] = {}

    async def acquire(self, key: tuple[str, str], limit: int, wait_at_most: float) -> Callable[[], Any]:
        queue = self._queues.setdefault(key, _Queue())
        queue.limit = limit
        if queue.held < limit and not queue.waiters:
            queue.held += 1
            return partial(self._release, key)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_at_most):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed a slot just as we gave up
                await self._release(key)
            else:
                with contextlib.suppress(ValueError):
                    queue.waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise RateLimitTimeout(
                    f"Concurrency limit {key[0]}/{key[1]}: no slot of {limit} came free "
                    f"within {wait_at_most:g} s"
                ) from None
            raise
        return partial(self._release, key)

    async def _release(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        queue.held -= 1
        while queue.waiters and queue.held < queue.limit:
            waiter = queue.waiters.popleft()
            if not waiter.done():  # hand the slot over
                queue.held += 1
                waiter.set_result(None)


class RedisLeases:
    """In-flight counts shared through Redis as leases that expire unless renewed."""

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._subscribed: dict[str, asyncio.Event] = {}

    @staticmethod
    def keys(key: tuple[str, str]) -> tuple[str, str]:
        from urllib.parse import quote

        tag = f"{quote(key[0], safe='')}:{quote(key[1], safe='')}"
        return f"{LEASE_PREFIX}{{{tag}}}:l", f"{LEASE_PREFIX}{{{tag}}}:free"

    async def _subscribe(self, channel: str) -> None:
        """Listen for releases on ``channel`` (returns once the server confirmed the subscription)."""
        event = self._subscribed.get(channel)
        failures: tuple[type[BaseException], ...] = (TimeoutError, *self._backend.transport_errors())
        try:
            async with asyncio.timeout(self._backend.timeout):
                if event is None:
                    event = self._subscribed[channel] = asyncio.Event()
                    if self._pubsub is None:
                        self._pubsub = self._backend.client().pubsub()
                    await self._pubsub.subscribe(channel)
                    if self._listener is None or self._listener.done():
                        self._listener = asyncio.get_running_loop().create_task(self._listen())
                await event.wait()
        except failures as exc:
            self._subscribed.pop(channel, None)  # try again next time
            raise self._backend.unavailable(exc) from exc

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            channel = message.get("channel")
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if message.get("type") == "subscribe":
                self._subscribed[channel].set()
            elif message.get("type") == "message":
                for key, queue in self._queues.items():
                    if self.keys(key)[1] == channel:
                        queue.wake_head()

    async def acquire(
        self, key: tuple[str, str], limit: int, lease: float, wait_at_most: float
    ) -> Callable[[], Any]:
        leases, channel = self.keys(key)
        queue = self._queues.setdefault(key, _Queue())
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not queue.waiters:
            waiter.set_result(None)  # nobody ahead of us here: try at once
        queue.waiters.append(waiter)
        lease_id = uuid.uuid4().hex
        started = time.monotonic()
        try:
            async with asyncio.timeout(wait_at_most):
                await self._subscribe(channel)  # before trying: no release can go unheard
                while True:
                    await waiter
                    deadline = round((time.time() + self._backend.timeout) * 1000)
                    deadline += self._backend.deadline_offset_ms()
                    status, wait_ms = await self._backend.run_script(
                        _LEASE_SCRIPT,
                        LEASE_SCRIPT_SHA,
                        (leases,),
                        ("acquire", limit, round(lease * 1000), lease_id, deadline),
                    )
                    if status == 1:
                        break
                    position = queue.waiters.index(waiter)
                    waiter = loop.create_future()
                    queue.waiters[position] = waiter
                    # Woken by a release, or when the oldest lease expires (its holder may be gone).
                    loop.call_later(max(int(wait_ms), 1) / 1000, _wake, waiter)
        except TimeoutError:
            raise RateLimitTimeout(
                f"Concurrency limit {key[0]}/{key[1]}: no slot of {limit} came free within "
                f"{time.monotonic() - started:.2f} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                queue.waiters.remove(waiter)
            queue.wake_head()  # the next local waiter tries for a slot too
        renewal = loop.create_task(self._renew(leases, lease_id, lease))

        async def release() -> None:
            renewal.cancel()
            await self._backend.run_script(
                _LEASE_SCRIPT, LEASE_SCRIPT_SHA, (leases,), ("release", limit, 0, lease_id, channel)
            )

        return release

    async def _renew(self, leases: str, lease_id: str, lease: float) -> None:
        while True:
            await asyncio.sleep(lease / 3)
            try:
                kept = await self._backend.run_script(
                    _LEASE_SCRIPT, LEASE_SCRIPT_SHA, (leases,), ("renew", 0, round(lease * 1000), lease_id)
                )
            except Exception as exc:  # the lease may lapse; the holder keeps running
                logger.warning("Could not renew concurrency lease %s: %s", leases, exc)
                continue
            if not kept:
                logger.warning("Concurrency lease %s lapsed before it was renewed", leases)
                return

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        self._listener, self._pubsub = None, None
        self._subscribed.clear()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ConcurrencySlot:
    """``async with GLOBAL_LIMITER.concurrency(key, n):`` holds one of ``n`` slots of ``key``."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire: Callable[[], Any]) -> None:
        self._acquire = acquire
        self._release: Callable[[], Any] | None = None

    async def acquire(self) -> None:
        self._release = await self._acquire()

    async def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            await release()

    async def __aenter__(self) -> ConcurrencySlot:
        await self.acquire()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.release()
