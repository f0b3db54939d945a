"""What only the Redis store does: round trips, memory, scripts, event loops, faults, fallback."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter, RedisUnavailableError
from tests.rate_limiter.conftest import RedisServer, free_port

KEY = ("client", "openai/gpt-4o")


def commands_run(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def keys_of_limiter(client: redis.Redis) -> list[bytes]:
    return sorted(client.scan_iter(match="lmi:rl:*"))


async def test_uncontended_acquisitions_take_one_command_each(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    limiter = GlobalRateLimiter(rate_config={KEY: "1000000 per 1 minute"}, redis_url=redis_url)
    await limiter.try_acquire(KEY)  # connect and load the script
    admin.config_resetstat()
    for _ in range(50):
        await limiter.try_acquire(KEY, weight=1000)
    counts = commands_run(admin)
    # commandstats also counts the commands the script runs inside the server; none of those is a
    # round trip. Every round trip of the limiter is an EVALSHA.
    inside_script = {
            "time", "hget", "hset", "hmget", "hincrby", "lindex", "lrange", "ltrim", "llen", "rpush",
            "lpush", "linsert", "lrem", "lset", "pexpire",
        }  # fmt: skip
    round_trips = {name: calls for name, calls in counts.items() if name not in inside_script}
    round_trips.pop("config|resetstat", None)
    round_trips.pop("info", None)
    assert round_trips == {"evalsha": 50}
    await limiter.aclose()


async def test_memory_follows_acquisitions_not_weight(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    light = GlobalRateLimiter(rate_config={("w", "light"): "100000000 per 1 minute"}, redis_url=redis_url)
    heavy = GlobalRateLimiter(rate_config={("w", "heavy"): "100000000 per 1 minute"}, redis_url=redis_url)
    for _ in range(300):
        await light.try_acquire(("w", "light"), weight=1)
        await heavy.try_acquire(("w", "heavy"), weight=2000)
    usage = {
        name: sum(admin.memory_usage(key, samples=0) or 0 for key in keys_of_limiter(admin) if name in key)
        for name in (b"light", b"heavy")
    }
    assert usage[b"heavy"] < usage[b"light"] * 1.3
    assert usage[b"heavy"] < 300 * 64  # a few tens of bytes per acquisition
    status = await heavy.rate_limit_status()
    assert status[("w", "heavy")]["n_items_in_period"] == 300 * 2000
    await light.aclose()
    await heavy.aclose()


async def test_script_reloaded_after_flush(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    limiter = GlobalRateLimiter(rate_config={KEY: "5 per 1 second"}, redis_url=redis_url)
    await limiter.try_acquire(KEY)
    admin.script_flush()
    await limiter.try_acquire(KEY, weight=2)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 3
    await limiter.aclose()


async def test_status_lists_windows_of_other_processes(redis_url: str) -> None:
    writer = GlobalRateLimiter(redis_url=redis_url)
    await writer.try_acquire(("client|request", "openai/gpt-4o:mini"), rate_limit="9 per 2 seconds", weight=3)
    reader = GlobalRateLimiter(redis_url=redis_url)  # knows nothing of that limit
    status = await reader.rate_limit_status()
    assert status == {
        ("client|request", "openai/gpt-4o:mini"): {
            "period_start": pytest.approx(time.time(), abs=2.0),
            "n_items_in_period": 3,
            "period_seconds": 2,
            "period_name": "second",
            "period_cap": 9,
        }
    }
    await writer.aclose()
    await reader.aclose()


def test_one_limiter_across_event_loops(redis_url: str) -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "5 per 1 second"}, redis_url=redis_url)
    asyncio.run(limiter.try_acquire(KEY, weight=2))
    asyncio.run(limiter.try_acquire(KEY, weight=2))  # a new loop gets its own connections
    with pytest.raises(RateLimitTimeout):
        asyncio.run(limiter.try_acquire(KEY, weight=2, acquire_timeout=0.1))


async def test_unreachable_redis_fails_fast_with_a_clear_error() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}"
    limiter = GlobalRateLimiter(rate_config={KEY: "5/second"}, redis_url=url)
    started = time.monotonic()
    with pytest.raises(
        RedisUnavailableError, match=r"Redis at redis://user:\*\*\*@127\.0\.0\.1:\d+"
    ) as raised:
        await limiter.try_acquire(KEY)
    assert isinstance(raised.value, ConnectionError)
    assert "fallback_to_memory" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert time.monotonic() - started < 2.0


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


async def test_silent_redis_gives_an_error_within_redis_timeout(silent_server: str) -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "5/second"}, redis_url=silent_server, redis_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=r"within 0\.5 s"):
        await limiter.try_acquire(KEY, acquire_timeout=30)
    assert time.monotonic() - started < 1.5


async def test_redis_dropping_mid_run(private_redis_server: RedisServer) -> None:
    limiter = GlobalRateLimiter(
        rate_config={KEY: "5/second"}, redis_url=private_redis_server.url, redis_timeout=1
    )
    await limiter.try_acquire(KEY)
    private_redis_server.kill()
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError):
        await limiter.try_acquire(KEY)
    assert time.monotonic() - started < 2.5


async def test_opt_in_memory_fallback(caplog: pytest.LogCaptureFixture) -> None:
    limiter = GlobalRateLimiter(
        rate_config={KEY: "2 per 1 second"}, redis_url=f"127.0.0.1:{free_port()}", fallback_to_memory=True
    )
    assert limiter.storage == "redis"
    with caplog.at_level(logging.WARNING, logger="lmi.rate_limiter"):
        await limiter.try_acquire(KEY, weight=2)
    assert any("cannot use Redis" in record.getMessage() for record in caplog.records)
    assert limiter.storage == "memory"
    with pytest.raises(RateLimitTimeout):  # still limited, in this process
        await limiter.try_acquire(KEY, acquire_timeout=0.1)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 2


async def test_repr_and_status_show_the_store_in_use(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After use, the repr names the store in use; period_start is whole seconds, as in the seed."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    shared = GlobalRateLimiter(rate_config={("client", "repr"): "10/minute"})
    local = GlobalRateLimiter(rate_config={("client", "repr"): "10/minute"}, use_in_memory=True)
    assert "REDIS_URL or memory" in repr(shared)  # not used yet: the environment is read at first use
    before = time.time()
    for limiter in (shared, local):
        await limiter.try_acquire(("client", "repr"))
        status = (await limiter.rate_limit_status())[("client", "repr")]
        assert type(status["period_start"]) is int
        assert int(before) <= status["period_start"] <= time.time()
    await shared.aclose()
    assert repr(shared) == f"GlobalRateLimiter(storage={redis_url!r}, limits=1)"
    assert repr(local) == "GlobalRateLimiter(storage='memory', limits=1)"
