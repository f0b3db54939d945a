"""One pooled aiohttp session per event loop, closed with the loop (and, by :func:`per_loop`, any other
per-loop client: the httpx clients lmi hands litellm).

Sessions are keyed by loop (and pool size), so concurrent calls share keep-alive connections and a
process running several loops never hands a session to the wrong one. A session is closed when its loop
shuts down: each loop gets a small async generator, parked at its first ``yield``, whose ``finally``
closes the loop's sessions. ``asyncio.run`` (and ``asyncio.Runner``, and pytest-asyncio) finalise every
live async generator before closing the loop, so the sessions close there without any patching of
asyncio and without "Unclosed client session" warnings. A loop driven by hand should run
``loop.run_until_complete(loop.shutdown_asyncgens())`` before ``loop.close()``, as asyncio asks of every
such loop; ``close_sessions()`` closes them explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import aiohttp

# Providers answer slowly; a connection idle this long is still worth reusing.
_KEEPALIVE_SECONDS = 30.0
T = TypeVar("T")


class _LoopSessions:
    """The sessions of one loop, by pool size, and the generator that closes them with the loop."""

    __slots__ = ("closer", "others", "sessions")

    def __init__(self) -> None:
        self.sessions: dict[int, aiohttp.ClientSession] = {}
        self.others: dict[Hashable, tuple[Any, Callable[[Any], Awaitable[None]]]] = {}
        self.closer: AsyncGenerator[None, None] | None = None

    def take_closers(self) -> list[Callable[[], Awaitable[None]]]:
        """Forget every session and other object held, and return what closes each (sessions first)."""
        closers: list[Callable[[], Awaitable[None]]] = [session.close for session in self.sessions.values()]
        closers += [functools.partial(close, other) for other, close in self.others.values()]
        self.sessions.clear()
        self.others.clear()
        return closers


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSessions] = weakref.WeakKeyDictionary()


async def _close_with_loop(holder: _LoopSessions) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        for close in holder.take_closers():
            with contextlib.suppress(Exception):  # closing must not mask the loop's own shutdown
                await close()


def _new_session(max_connections: int) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,  # one provider host usually takes every connection
        keepalive_timeout=_KEEPALIVE_SECONDS,
        ttl_dns_cache=300,
    )
    # trust_env: HTTP(S)_PROXY, NO_PROXY and netrc as every other HTTP client honours them. TLS is
    # verified (aiohttp's default); timeouts are set per request.
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=True,
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
        raise_for_status=False,
    )


async def _holder() -> _LoopSessions:
    loop = asyncio.get_running_loop()
    holder = _LOOPS.get(loop)
    if holder is None:
        holder = _LOOPS[loop] = _LoopSessions()
    if holder.closer is None:
        holder.closer = _close_with_loop(holder)
        await holder.closer.__anext__()  # parked at its yield: the loop now finalises it at shutdown
    return holder


async def session_for(max_connections: int) -> aiohttp.ClientSession:
    """The running loop's session with a pool of ``max_connections``, created on first use."""
    holder = _LOOPS.get(asyncio.get_running_loop())
    if holder is not None:
        session = holder.sessions.get(max_connections)
        if session is not None and not session.closed:
            return session
    holder = await _holder()
    session = holder.sessions[max_connections] = _new_session(max_connections)
    return session


async def per_loop(key: Hashable, create: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> T:
    """The running loop's object under ``key``: ``create()`` on first use, closed with the loop."""
    holder = _LOOPS.get(asyncio.get_running_loop())
    if holder is not None and key in holder.others:
        return holder.others[key][0]
    holder = await _holder()
    if key not in holder.others:  # _holder may have awaited: another task may have made it meanwhile
        holder.others[key] = (create(), close)
    return holder.others[key][0]


async def close_sessions() -> None:
    """Close the running loop's sessions now (they are recreated on the next native call)."""
    holder = _LOOPS.get(asyncio.get_running_loop())
    if holder is not None:
        for close in holder.take_closers():
            await close()
