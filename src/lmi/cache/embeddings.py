"""Embeddings through the cache, one entry per text: a batch sends only the texts that miss.

Vectors are stored as little-endian float32 when that loses nothing (OpenAI's vectors are float32), else
float64, so a hit returns exactly the floats the provider sent. The USD a batch cost is shared among its
texts by length, so every hit can say what it saved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lmi.cache.keys import embedding_key
from lmi.cache.store import CacheStore, Item

Embed = Callable[[list[str], list[int]], Awaitable[list[list[float]]]]


def encode_vector(vector: list[float]) -> bytes:
    import numpy as np

    as_float32 = np.asarray(vector, dtype="<f4")
    if as_float32.astype(float).tolist() == vector:
        return b"f4" + as_float32.tobytes()
    return b"f8" + np.asarray(vector, dtype="<f8").tobytes()


def decode_vector(value: bytes) -> list[float]:
    import numpy as np

    dtype = {b"f4": "<f4", b"f8": "<f8"}[value[:2]]
    vector: list[float] = np.frombuffer(value[2:], dtype=dtype).tolist()
    return vector


async def cached_embeddings(
    store: CacheStore,
    key_prefix: Mapping[str, Any],
    texts: list[str],
    positions: list[int],
    embed: Embed,
    *,
    model: str,
    spent: Callable[[], float],
) -> list[list[float]]:
    """Vectors of ``texts`` from ``store``, embedding (once each) only the texts it lacks.

    ``positions`` are the texts' indices in the caller's list (for errors); ``spent()`` reads the model's
    running cost, so the misses' cost can be shared among the texts stored.
    """
    keys = [embedding_key(key_prefix, text) for text in texts]
    found = await store.get_many(list(dict.fromkeys(keys)))
    vectors: dict[str, list[float]] = {key: decode_vector(entry.value) for key, entry in found.items()}
    if found:
        from lmi.cost import GLOBAL_COST_TRACKER

        GLOBAL_COST_TRACKER.record_cache_hit(model, sum(entry.cost_usd for entry in found.values()))
    missing: dict[str, int] = {}  # each missing key once, at its first text
    for index, key in enumerate(keys):
        if key not in vectors and key not in missing:
            missing[key] = index
    if missing:
        before = spent()
        sent = [texts[index] for index in missing.values()]
        embedded = await embed(sent, [positions[index] for index in missing.values()])
        cost = spent() - before
        total_length = sum(len(text) for text in sent) or 1
        items = []
        for key, text, vector in zip(missing, sent, embedded, strict=True):
            vectors[key] = vector
            items.append(
                Item(key, encode_vector(vector), cost * len(text) / total_length, "embedding", model)
            )
        await store.put_many(items)
    return [vectors[key] for key in keys]


__all__ = ["cached_embeddings", "decode_vector", "encode_vector"]
