"""The response cache: exact, durable answers, so re-runs cost nothing and crashed pipelines resume.

- :mod:`lmi.cache.keys`: the canonical request and its key (what is in it, what never is).
- :mod:`lmi.cache.spec`: ``config["cache"]`` / env ``LMI_CACHE`` → a store shared in the process.
- :mod:`lmi.cache.sqlite`, :mod:`lmi.cache.redis`: the stores (:class:`~lmi.cache.store.CacheStore`);
  :mod:`lmi.cache.sqlite_file`: the SQLite file's schema, and opening or refusing a file.
- :mod:`lmi.cache.chat`: chat calls through the cache, with single flight.
- :mod:`lmi.cache.embeddings`: embeddings cached per text.

Answering from the cache outside ``call`` (e.g. a batch that skips items already answered)::

    store = llm.response_cache()                      # None when the model has no cache
    key = llm.cache_key(prompt_messages, request_kwargs)
    results = await chat_cache(store).lookup(key, prompt_messages)   # hits, or None
    await chat_cache(store).store_results(key, results)              # after validating them

``import lmi.cache`` loads no store: SQLite and Redis code load when a store of that kind is opened.
"""

from __future__ import annotations

from lmi.cache.chat import ChatCache, chat_cache
from lmi.cache.errors import CacheError
from lmi.cache.keys import UncacheableRequest, chat_key, embedding_key, embedding_key_prefix
from lmi.cache.spec import CACHE_ENV, default_cache_path, open_cache, parse_duration, parse_size
from lmi.cache.store import CacheStats, CacheStore, Entry, Item

__all__ = [
    "CACHE_ENV",
    "CacheError",
    "CacheStats",
    "CacheStore",
    "ChatCache",
    "Entry",
    "Item",
    "UncacheableRequest",
    "chat_cache",
    "chat_key",
    "default_cache_path",
    "embedding_key",
    "embedding_key_prefix",
    "open_cache",
    "parse_duration",
    "parse_size",
]
