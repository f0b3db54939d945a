"""Chat calls through the cache: look up, else make the call once however many ask at the same moment.

``ChatCache.call`` is the one function the call path goes through (:meth:`lmi.llms.base.LLMModel.call`):

1. look the key up; a hit returns the stored results (all n) as ``cache_hit=True``, ``cost=0.0`` with the
   original cost in ``cost_saved``, feeds streaming callbacks the stored text, and records the hit on the
   cost tracker; no limiter or budget is charged because no request is made;
2. otherwise, if an identical request is already in flight in this process, wait for its answer;
3. otherwise lead: take the store's lease (across processes, with Redis), make the call, store the
   results when they are complete and validated, then let the waiters have them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import cache, partial
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from lmi._lazy import aviary_core
from lmi.cache.store import NO_LEASE, CacheStore, Entry, Item, Lease
from lmi.types import Deferred, LLMResult, cvar_session_id

if TYPE_CHECKING:
    from lmi.cost.tracker import CostTracker

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Fields that describe this call rather than the answer: set afresh on every hit (and not stored).
_PER_CALL_FIELDS: Final = frozenset(
    {"id", "session_id", "name", "prompt", "date", "seconds_to_first_token", "seconds_to_last_token",
     "cache_hit", "cost_saved"}
)  # fmt: skip
_NOT_STORED: Final = set(_PER_CALL_FIELDS)
_NOT_STORED_NOR_MESSAGES: Final = {*_PER_CALL_FIELDS, "messages"}
_INCOMPLETE_FINISH = frozenset({None, "error"})
_SET_ON_A_HIT: Final = frozenset(
    {"cost", "cost_saved", "cache_hit", "seconds_to_first_token", "seconds_to_last_token", "prompt"}
)


class _LeaderCancelled(Exception):
    """The request being waited on was cancelled by its caller: a waiter makes it instead."""


def storable(results: Sequence[LLMResult]) -> bool:
    """Only whole answers: at least one result, each one finished by the provider."""
    return bool(results) and all(result.finish_reason not in _INCOMPLETE_FINISH for result in results)


def encode_results(results: Sequence[LLMResult]) -> bytes:
    """The results as stored: fields at their defaults are left out (a hit has fewer to read)."""
    rows = [_row(result) for result in results]
    return json.dumps({"v": FORMAT_VERSION, "results": rows}, separators=(",", ":")).encode()


def _row(result: LLMResult) -> dict[str, Any]:
    messages = result.__dict__.get("messages")
    if type(messages) is not Deferred:
        return result.model_dump(mode="json", exclude=_NOT_STORED, exclude_defaults=True)
    # Messages not built yet are stored in their plain form: storing must not import aviary (litellm).
    row = result.model_dump(mode="json", exclude=_NOT_STORED_NOR_MESSAGES, exclude_defaults=True)
    row["messages"] = messages.preview
    return row


def _messages(rows: list[dict[str, Any]]) -> list[Any]:
    aviary = aviary_core()
    return [
        (aviary.ToolRequestMessage if row.get("tool_calls") else aviary.Message).model_validate(row)
        for row in rows
    ]


@cache
def _cost_tracker() -> CostTracker:
    from lmi.cost import GLOBAL_COST_TRACKER

    return GLOBAL_COST_TRACKER


@cache
def _aviary_prompt() -> Callable[[list[Any]], list[Any]]:
    from lmi.llms.results import _aviary_prompt

    return _aviary_prompt


class _Stored(TypedDict):
    v: int
    results: list[LLMResult]


@cache
def _stored() -> TypeAdapter[_Stored]:
    """Stored entries parsed and validated in one pass (built on the first hit)."""
    return TypeAdapter(_Stored)


def decode_results(value: bytes, prompt: list[Any] | None, elapsed: float) -> list[LLMResult]:
    """Stored results as this call's hits: fresh ids and times, cost 0, the stored cost as saved.

    Messages (aviary's, which import litellm) are built when first read, as on a miss.
    """
    data = _stored().validate_json(value)
    if data["v"] != FORMAT_VERSION:
        raise ValueError(f"entry format {data['v']!r}, expected {FORMAT_VERSION}")
    if prompt and any(type(m) is dict for m in prompt):  # plain messages: aviary ones when first read
        shown: Any = Deferred(partial(_aviary_prompt(), prompt), prompt)
    else:
        shown = list(prompt) if prompt is not None else None
    session = cvar_session_id.get()
    for result in data["results"]:
        # What describes this call, set over what was validated (fresh ids and dates came with it).
        fields = result.__dict__
        fields["cost_saved"], fields["cost"] = fields["cost"], 0.0
        fields["cache_hit"] = True
        fields["seconds_to_first_token"] = fields["seconds_to_last_token"] = elapsed
        fields["session_id"] = session  # entries stored before it was per call hold their own
        fields["prompt"] = shown
        messages = fields["messages"]
        if messages is not None:
            fields["messages"] = Deferred(partial(_messages, messages), messages)
        result.__pydantic_fields_set__.update(_SET_ON_A_HIT)
    return data["results"]


class ChatCache:
    """The chat side of one store: lookups, storing, and the requests in flight in this process."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        self._flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[Entry]]]
        self._flights = weakref.WeakKeyDictionary()

    async def lookup(self, key: str, prompt: list[Any] | None = None) -> list[LLMResult] | None:
        """The stored results for ``key`` as hits (recorded as such), or None."""
        started = time.perf_counter()
        entry = await self.store.get(key)
        return None if entry is None else self._hit(entry, prompt, started)

    async def call(
        self,
        key: str,
        produce: Callable[[], Awaitable[list[LLMResult]]],
        *,
        prompt: list[Any] | None,
        refresh: bool = False,
        notify: Callable[[str], Awaitable[None]] | None = None,
    ) -> list[LLMResult]:
        started = time.perf_counter()
        if not refresh:  # the common case first: a hit needs nothing else
            entry = await self.store.get(key)
            hit = None if entry is None else self._hit(entry, prompt, started)
            if hit is not None:
                return await self._deliver(hit, notify)
        flights = self._flights.setdefault(asyncio.get_running_loop(), {})
        while not refresh:
            entry = await self.store.get(key)
            if entry is None:
                flight = flights.get(key)
                if flight is None:
                    break
                try:
                    entry = await asyncio.shield(flight)
                except _LeaderCancelled:
                    continue  # look again: the answer may have landed, or we lead now
                await self.store.count_hits(1, entry.cost_usd)
            hit = self._hit(entry, prompt, started)
            if hit is None:  # an entry this version cannot read: ask again and overwrite it
                break
            return await self._deliver(hit, notify)
        return await self._lead(key, produce, flights, refresh, prompt, notify, started)

    async def _lead(
        self,
        key: str,
        produce: Callable[[], Awaitable[list[LLMResult]]],
        flights: dict[str, asyncio.Future[Entry]],
        refresh: bool,
        prompt: list[Any] | None,
        notify: Callable[[str], Awaitable[None]] | None,
        started: float,
    ) -> list[LLMResult]:
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        if key not in flights:
            flights[key] = future
        lease: Lease = NO_LEASE
        try:
            if not refresh:
                leased = await self.store.lease(key)
                if isinstance(leased, Entry):  # another process answered while we waited for it
                    hit = self._hit(leased, prompt, started)
                    if hit is not None:
                        future.set_result(leased)
                        return await self._deliver(hit, notify)
                else:
                    lease = leased
            results = await produce()
            entry = await self.store_results(key, results)
            future.set_result(entry)
            return results
        except asyncio.CancelledError:
            future.set_exception(_LeaderCancelled())
            future.exception()  # retrieved: no "never retrieved" log when nobody waited
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            if flights.get(key) is future:
                del flights[key]
            await lease.release()

    async def store_results(self, key: str, results: list[LLMResult]) -> Entry:
        """Store complete results (never failing the call they answer); return what waiters share."""
        cost = sum(result.cost for result in results)
        value = encode_results(results)
        if storable(results):
            model = results[0].model
            try:
                await self.store.put(Item(key, value, cost, "chat", model))
            except Exception:  # the answer is paid for and in hand: give it back, say why it is not kept
                logger.exception("Could not store an answer of %s in the response cache", model)
        return Entry(value, cost)

    @staticmethod
    def _hit(entry: Entry, prompt: list[Any] | None, started: float) -> list[LLMResult] | None:
        try:
            results = decode_results(entry.value, prompt, time.perf_counter() - started)
        except (ValueError, TypeError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
            logger.warning("Ignoring a response cache entry this lmi cannot read: %s", exc)
            return None
        if results:
            _cost_tracker().record_cache_hit(results[0].model, entry.cost_usd)
        return results

    @staticmethod
    async def _deliver(
        results: list[LLMResult], notify: Callable[[str], Awaitable[None]] | None
    ) -> list[LLMResult]:
        if notify is not None and results and results[0].text:
            await notify(results[0].text)
        return results


_chat_caches: weakref.WeakKeyDictionary[CacheStore, ChatCache] = weakref.WeakKeyDictionary()


def chat_cache(store: CacheStore) -> ChatCache:
    """The one ChatCache of ``store`` (shared by every model using it)."""
    found = _chat_caches.get(store)
    if found is None:
        found = _chat_caches[store] = ChatCache(store)
    return found


__all__ = ["ChatCache", "chat_cache", "decode_results", "encode_results", "storable"]
