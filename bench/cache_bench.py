"""The response cache: a hit's CPU against a loopback miss's, lookups at 1,000 vs 1,000,000 entries, and
identical concurrent requests made once.

    python bench/cache_bench.py                  # all three, ~3 min (building the 1M-entry file: ~1 min)
    python bench/cache_bench.py --only hit       # or: lookup, flight

hit: each round makes K calls with new prompts through a cached ``LiteLLMModel`` (misses: the loopback
server of ``_server.py``, in its own process, answers with a recorded response; the answer is stored),
then the same K calls again (hits). Only this process's CPU is counted (``time.process_time``); the figure
is the median over rounds of hit CPU / miss CPU. The hits' statistics, which the SQLite store writes
behind, are written (``store.flush()``) inside the hits' timing. Target ≤ 0.10.

lookup: two SQLite stores, 1,000 and 1,000,000 entries (100-byte values, random keys); each round times
N lookups of random present keys in each, alternating which goes first. Figure: median ratio 1M / 1k.
Target ≤ 2.

flight: 100 concurrent identical ``call_single`` through a fresh cache; the replay server (its answer held
back 0.2 s) counts the requests it receives. Target: 1, for SQLite and (with ``--redis URL``) Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.replay, for the flight figure

from _common import PLAIN_RECORDING, server_process, summarize
from lmi import LiteLLMModel
from lmi.cache.sqlite import SQLiteStore, open_cache_file

MODEL = "gpt-4o-mini"


def cached_model(api_base: str, cache: str) -> LiteLLMModel:
    params = {"model": MODEL, "api_base": api_base, "api_key": "sk-bench"}
    return LiteLLMModel(
        name=MODEL,
        config={"model_list": [{"model_name": MODEL, "litellm_params": params}], "cache": cache},
    )


async def hit_vs_miss(rounds: int, calls: int) -> float:
    with server_process() as root, tempfile.TemporaryDirectory() as folder:
        llm = cached_model(f"{root}/{PLAIN_RECORDING}/v1", f"{folder}/bench.db")
        store = llm.response_cache()
        assert store is not None
        await llm.call_single("warm up")  # litellm import, connection, SQLite file
        assert (await llm.call_single("warm up")).cache_hit
        misses, hits = [], []
        for number in range(rounds):
            prompts = [f"round {number} question {index}" for index in range(calls)]
            for bucket in (misses, hits):
                gc.collect()
                started = time.process_time()
                results = await asyncio.gather(*(llm.call_single(prompt) for prompt in prompts))
                if bucket is hits:  # what the hits changed is written behind: its cost is theirs
                    await store.flush()
                bucket.append((time.process_time() - started) / calls)
                assert all(r.cache_hit for r in results) == (bucket is hits)
        return summarize("CPU per call, hit vs loopback miss", hits, misses, "ms", 1e3, ("hit", "miss"))


def build_store(path: Path, entries: int) -> list[str]:
    """A cache file holding ``entries`` random keys (written directly, in one transaction)."""
    open_cache_file(path).close()  # creates the schema
    keys = [random.randbytes(32).hex() for _ in range(entries)]
    connection = sqlite3.connect(path)
    now = time.time()
    value = b"v" * 100
    with connection:
        connection.executemany(
            "INSERT INTO entries (key, value, kind, model, cost_usd, size, created_at, used_at)"
            " VALUES (?, ?, 'chat', ?, 0.001, 164, ?, ?)",
            ((key, value, MODEL, now, now) for key in keys),
        )
    connection.close()
    return keys


async def lookups(rounds: int, per_round: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        print("building the 1,000 and 1,000,000-entry files ...", flush=True)
        small_keys = build_store(Path(folder) / "small.db", 1_000)
        large_keys = build_store(Path(folder) / "large.db", 1_000_000)
        small = SQLiteStore(Path(folder) / "small.db", max_bytes=None, ttl_seconds=None)
        large = SQLiteStore(Path(folder) / "large.db", max_bytes=None, ttl_seconds=None)

        async def timed(store: SQLiteStore, keys: list[str]) -> float:
            chosen = random.choices(keys, k=per_round)
            started = time.perf_counter()
            for key in chosen:
                assert await store.get(key) is not None
            return (time.perf_counter() - started) / per_round

        await timed(small, small_keys)
        await timed(large, large_keys)
        small_times, large_times = [], []
        for number in range(rounds):
            pair = [(small, small_keys, small_times), (large, large_keys, large_times)]
            for store, keys, bucket in pair if number % 2 else reversed(pair):
                bucket.append(await timed(store, keys))
        return summarize(
            "lookup (hit) time", large_times, small_times, "ms", 1e3, ("1M entries", "1k entries")
        )


async def flight(redis_url: str | None) -> None:
    from tests.replay import Fault, ReplayServer

    server = ReplayServer().start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            caches = {"sqlite": f"{folder}/flight.db"}
            if redis_url:
                caches["redis"] = redis_url
            for kind, cache in caches.items():
                server.clear()
                server.inject(PLAIN_RECORDING, Fault(delay=0.2, replay=True))
                llm = cached_model(server.openai_base(PLAIN_RECORDING), cache)
                prompt = f"flight through {kind} {time.time()}"
                results = await asyncio.gather(*(llm.call_single(prompt) for _ in range(100)))
                print(
                    f"100 identical concurrent calls ({kind}): {len(server.received)} provider request(s),"
                    f" {sum(r.cache_hit for r in results)} answered from the first"
                )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("hit", "lookup", "flight"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="calls per side per round (hit)")
    parser.add_argument("--redis", help="also measure single flight through this Redis")
    args = parser.parse_args()
    if args.only in (None, "hit"):
        asyncio.run(hit_vs_miss(args.rounds, args.calls))
    if args.only in (None, "lookup"):
        asyncio.run(lookups(args.rounds, 2000))
    if args.only in (None, "flight"):
        asyncio.run(flight(args.redis))


if __name__ == "__main__":
    main()
