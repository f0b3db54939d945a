"""The Redis store beyond what every store does (test_store.py): a cache that is down or dies, and single
flight across processes, on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from aviary.core import Message

from lmi import LiteLLMModel
from lmi.cache import open_cache
from lmi.cache.redis import CacheUnavailableWarning, RedisStore
from tests.rate_limiter.conftest import RedisServer, free_port
from tests.replay import Fault, ReplayServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
UNIVERSE = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]


def model(replay: ReplayServer, cache: str) -> LiteLLMModel:
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base("openai-chat-634cf7")}
    return LiteLLMModel(
        name="gpt-4o-mini",
        config={"model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}], "cache": cache},
    )


async def test_chat_hit_through_redis(replay: ReplayServer, redis_url: str) -> None:
    llm = model(replay, redis_url)
    assert isinstance(llm.response_cache(), RedisStore)
    miss = await llm.call_single(UNIVERSE)
    hit = await llm.call_single(UNIVERSE)
    assert len(replay.received) == 1
    assert hit.cache_hit
    assert (hit.text, hit.cost, hit.cost_saved) == (miss.text, 0.0, miss.cost)


async def test_unreachable_redis_means_no_cache_and_one_warning(replay: ReplayServer) -> None:
    llm = model(replay, f"redis://127.0.0.1:{free_port()}/0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [await llm.call_single(UNIVERSE) for _ in range(3)]
    assert len(replay.received) == 3
    assert not any(result.cache_hit for result in results)
    cache_warnings = [w for w in caught if issubclass(w.category, CacheUnavailableWarning)]
    assert len(cache_warnings) == 1
    assert "uncached" in str(cache_warnings[0].message)


async def test_redis_dying_mid_run_never_fails_a_call(
    replay: ReplayServer, private_redis_server: RedisServer
) -> None:
    llm = model(replay, private_redis_server.url)
    await llm.call_single(UNIVERSE)
    assert (await llm.call_single(UNIVERSE)).cache_hit
    private_redis_server.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = [await llm.call_single(UNIVERSE) for _ in range(2)]
    assert not any(result.cache_hit for result in after)
    assert len(replay.received) == 3
    assert sum(issubclass(w.category, CacheUnavailableWarning) for w in caught) == 1


def test_password_stays_out_of_the_location() -> None:
    store = open_cache("redis://user:hunter2@127.0.0.1:1/0")
    assert store is not None
    assert "hunter2" not in store.location
    assert "hunter2" not in repr(store)


async def start_workers(
    replay: ReplayServer, redis_url: str, count: int, *args: str
) -> list[asyncio.subprocess.Process]:
    """``count`` flight workers (``tests.cache.flight_worker`` with ``args``), each imported and ready."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    base = replay.openai_base("openai-chat-634cf7")
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.cache.flight_worker",
            base,
            redis_url,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert (await asyncio.wait_for(worker.stdout.readline(), 120)).strip() == b"ready"
    return workers


async def go(worker: asyncio.subprocess.Process) -> None:
    assert worker.stdin is not None
    worker.stdin.write(b"go\n")
    await worker.stdin.drain()


async def test_identical_requests_in_several_processes_make_one_call(
    replay: ReplayServer, redis_url: str
) -> None:
    replay.inject("openai-chat-634cf7", Fault(delay=1.0, replay=True))  # keep the leader's call in flight
    workers = await start_workers(replay, redis_url, 3, "33")
    for worker in workers:
        await go(worker)
    outputs = [json.loads((await worker.communicate())[0]) for worker in workers]
    assert len(replay.received) == 1
    assert {text for output in outputs for text in output["texts"]} == {"Existence."}
    assert sum(output["hits"] for output in outputs) == 3 * 33 - 1


async def test_a_dead_leaders_lease_expires_and_a_waiter_answers(
    replay: ReplayServer, redis_url: str
) -> None:
    replay.inject("openai-chat-634cf7", Fault(delay=30, replay=True))  # the leader's call never ends
    leader, waiter = await start_workers(replay, redis_url, 2, "1", "1000")  # a lease of 1 s
    await go(leader)
    assert await asyncio.to_thread(replay.wait_for_requests, 1, 30)  # the leader holds the lease now
    await go(waiter)
    await asyncio.sleep(1.5)  # longer than the lease: the leader renews it while alive
    assert len(replay.received) == 1  # the waiter waits instead of asking
    leader.kill()
    await leader.wait()
    output, _ = await asyncio.wait_for(waiter.communicate(), 60)
    assert json.loads(output) == {"texts": ["Existence."], "hits": 0}
    assert len(replay.received) == 2
