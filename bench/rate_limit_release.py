"""Exactness at release time, this version side by side with the previous one (before issue 13).

Every figure is measured from outside: each waiter logs the moment ``try_acquire`` returned to it (its
local clock), and the densest window of those moments is compared to the limit; utilization is the
shortest time the limit allows for the grants (a full window every period) over the time they took.
Redis figures also count client round trips (``EVAL``/``EVALSHA`` calls in ``INFO commandstats``; commands
run inside scripts are not round trips) and the server's CPU (``INFO cpu``) per acquisition.

The previous version is taken from git (``--previous``, default ``691c058``) into a temporary package
``lmi_prev``; both run in the same way, alternating in rounds; the densest window is the worst round,
the other figures the median over rounds.

1. memory: 100 waiters in one event loop on a loop that is late by 0-6 ms now and then (40 per s);
2. Redis, contended: 6 processes x 40 waiters (60 per s);
3. Redis, uncontended: 1,000 sequential acquisitions that always fit.

    python bench/rate_limit_release.py [--rounds 3] [--previous 691c058]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import math
import multiprocessing
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.rate_limit_redis import redis_server  # noqa: E402
from tests.rate_limiter.windows import max_in_any_window  # noqa: E402

KEY = ("client", "bench-release")
MEMORY_LIMIT, MEMORY_WAITERS = 40, 100
REDIS_LIMIT, PROCESSES, WAITERS = 60, 6, 40
UNCONTENDED = 1000


def previous_package(commit: str, into: Path) -> Path:
    """``src/lmi`` at ``commit`` as package ``lmi_prev`` under ``into`` (imports rewritten)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src/lmi"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "src" / "lmi"
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\b(from|import) lmi(\b|\.)", r"\1 lmi_prev\2", text)
        path.write_text(text)
    target = into / "lmi_prev"
    package.rename(target)
    return into


def utilization(times: list[float], limit: int, period: float = 1.0) -> float:
    shortest = (math.ceil(len(times) / limit) - 1) * period
    return shortest / (max(times) - min(times))


def densest(times: list[float]) -> int:
    return max_in_any_window([(at, 1) for at in times], 1.0)


# -- memory ---------------------------------------------------------------------------------------------


async def memory_round(package: str) -> tuple[int, float]:
    limiter_module = importlib.import_module(f"{package}.rate_limiter")
    limiter = limiter_module.GlobalRateLimiter(
        rate_config={KEY: f"{MEMORY_LIMIT} per 1 second"}, use_in_memory=True
    )
    released: list[float] = []
    done = asyncio.Event()

    async def waiter() -> None:
        await limiter.try_acquire(KEY, acquire_timeout=60)
        released.append(time.monotonic())

    async def late_loop() -> None:
        tick = 0
        while not done.is_set():
            time.sleep(0.001 * (tick % 7))  # noqa: ASYNC251 - the point: a loop that is late
            tick += 1
            await asyncio.sleep(0.003)

    noise = asyncio.create_task(late_loop())
    await asyncio.gather(*(waiter() for _ in range(MEMORY_WAITERS)))
    done.set()
    await noise
    return densest(released), utilization(released, MEMORY_LIMIT)


# -- Redis ----------------------------------------------------------------------------------------------


def _worker(package: str, path: str, url: str, start_at: float) -> list[float]:
    sys.path.insert(0, path)
    limiter_module = importlib.import_module(f"{package}.rate_limiter")

    async def run() -> list[float]:
        limiter = limiter_module.GlobalRateLimiter(
            rate_config={KEY: f"{REDIS_LIMIT} per 1 second"}, redis_url=url
        )
        await limiter.try_acquire(("warm-up", "x"), rate_limit="100000 per 1 second")
        released: list[float] = []

        async def waiter() -> None:
            await limiter.try_acquire(KEY, acquire_timeout=60)
            released.append(time.time())

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(waiter() for _ in range(WAITERS)))
        await limiter.aclose()
        return released

    return asyncio.run(run())


def server_counters(client: redis.Redis) -> tuple[int, float]:
    stats = client.info("commandstats")
    trips = sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_eval", "cmdstat_evalsha"))
    cpu = client.info("cpu")
    return trips, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def redis_contended(package: str, path: str, url: str) -> tuple[int, float, float, float]:
    client = redis.Redis.from_url(url)
    client.flushall()
    start_at = time.time() + 6.0
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        pending = pool.starmap_async(_worker, [(package, path, url, start_at)] * PROCESSES)
        time.sleep(max(0.0, start_at - time.time() - 0.5))  # warm-ups done: count from here
        trips_before, cpu_before = server_counters(client)
        per_process = pending.get()
    trips_after, cpu_after = server_counters(client)
    client.close()
    released = [at for times in per_process for at in times]
    acquisitions = len(released)
    return (
        densest(released),
        utilization(released, REDIS_LIMIT),
        (trips_after - trips_before) / acquisitions,
        (cpu_after - cpu_before) / acquisitions * 1e6,
    )


async def redis_uncontended(package: str, url: str) -> tuple[float, float]:
    limiter_module = importlib.import_module(f"{package}.rate_limiter")
    limiter = limiter_module.GlobalRateLimiter(rate_config={KEY: "1000000 per 1 second"}, redis_url=url)
    await limiter.try_acquire(KEY)  # connect and load the script
    client = redis.Redis.from_url(url)
    trips_before, cpu_before = server_counters(client)
    for _ in range(UNCONTENDED):
        await limiter.try_acquire(KEY, weight=7)
    trips_after, cpu_after = server_counters(client)
    client.close()
    await limiter.aclose()
    return (trips_after - trips_before) / UNCONTENDED, (cpu_after - cpu_before) / UNCONTENDED * 1e6


# -- report ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--previous", default="691c058")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"lmi": {}, "lmi_prev": {}}

    def add(package: str, name: str, value: float) -> None:
        results[package].setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        path = str(previous_package(args.previous, Path(tmp)))
        sys.path.insert(0, path)
        for _ in range(args.rounds):
            for package in ("lmi", "lmi_prev"):
                most, used = asyncio.run(memory_round(package))
                add(package, f"memory: densest 1 s window at release (limit {MEMORY_LIMIT})", most)
                add(package, "memory: utilization", used)
                most, used, trips, cpu = redis_contended(package, path, url)
                label = f"{PROCESSES} procs x {WAITERS} waiters"
                add(package, f"redis {label}: densest 1 s window at release (limit {REDIS_LIMIT})", most)
                add(package, f"redis {label}: utilization", used)
                add(package, f"redis {label}: round trips per acquisition", trips)
                add(package, f"redis {label}: server CPU per acquisition (µs)", cpu)
                trips, cpu = asyncio.run(redis_uncontended(package, url))
                add(package, "redis uncontended: round trips per acquisition", trips)
                add(package, "redis uncontended: server CPU per acquisition (µs)", cpu)
    width = max(len(name) for name in results["lmi"])
    title = f"(densest: max, others: median of {args.rounds} rounds)"
    print(f"{title:<{width}}  {'this version':>12}  {'previous':>12}")
    for name, values in results["lmi"].items():
        pick = max if "densest" in name else statistics.median  # exactness is about the worst round
        ours, previous = pick(values), pick(results["lmi_prev"][name])
        print(f"{name:<{width}}  {ours:>12.3f}  {previous:>12.3f}")


if __name__ == "__main__":
    main()
