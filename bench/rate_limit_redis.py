"""Redis backend: round trips, memory and exactness, side by side with ``limits`` used the naive way.

Starts a private ``redis-server`` on a free loopback port (or uses ``--redis-url``) and measures:

1. uncontended acquisitions: client commands (round trips) and commands run inside scripts, counted with
   MONITOR, and latency; interleaved rounds against ``limits``' async RedisStorage + moving window;
2. memory: MEMORY USAGE of the keys after 2000 acquisitions of weight 2000 (reference: ``limits`` moving
   window, which stores one list entry per unit of weight);
3. contention: 4 processes x 50 waiters on a 20/s limit for 5 s. Commands per acquisition, utilization
   (units granted during the run / (20 per s x 5 s)), the most units in any 1 s window, from the grant
   times on the Redis clock (exact) and from local times taken after ``try_acquire`` returned. Reference:
   ``limits`` hit() polled every 10 ms, as the library we re-implement did.

    python bench/rate_limit_redis.py [--skip-reference-contention]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import limits
import redis
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GlobalRateLimiter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.rate_limiter.windows import max_in_any_window

KEY = ("client", "openai/gpt-4o")
PROCESSES, WAITERS, RATE, RUN_SECONDS = 4, 50, 20, 5.0


# -- infrastructure ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
        )
        try:
            admin = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    admin.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            process.kill()
            process.wait()


class CommandCounter:
    """Counts commands with MONITOR: those sent by clients (round trips) and those run inside scripts."""

    def __init__(self, url: str) -> None:
        self.admin = redis.Redis.from_url(url)
        host, port = (
            self.admin.connection_pool.connection_kwargs["host"],
            self.admin.connection_pool.connection_kwargs["port"],
        )
        self.socket = socket.create_connection((host, port))
        self.socket.sendall(b"MONITOR\r\n")
        self.reader = self.socket.makefile("rb")
        assert self.reader.readline().startswith(b"+OK")
        self.lock = threading.Lock()
        self.client: Counter[str] = Counter()
        self.scripted: Counter[str] = Counter()
        self.marks: set[str] = set()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for raw in self.reader:
            line = raw.decode(errors="replace")
            source, _, command = line.partition("] ")
            name = command.split(" ", 1)[0].strip().strip('"').lower()
            with self.lock:
                if name == "echo" and '"lmi-bench-mark-' in command:
                    self.marks.add(command.split(" ", 1)[1].strip().strip('"'))
                elif source.endswith(" lua"):
                    self.scripted[name] += 1
                else:
                    self.client[name] += 1

    def snapshot(self) -> tuple[int, int]:
        """(client commands, scripted commands) so far, once every command sent before the call is read."""
        mark = f"lmi-bench-mark-{time.monotonic_ns()}"
        self.admin.echo(mark)
        while True:
            with self.lock:
                if mark in self.marks:
                    return sum(self.client.values()), sum(self.scripted.values())
            time.sleep(0.01)


# -- 1. uncontended ------------------------------------------------------------------------------------


async def uncontended(url: str, counter: CommandCounter, rounds: int = 6, per_round: int = 300) -> None:
    limit = "1000000000 per 1 minute"
    ours = GlobalRateLimiter(rate_config={KEY: limit}, redis_url=url)
    storage = RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy")
    reference = MovingWindowRateLimiter(storage)
    item = limits.parse(limit)
    await ours.try_acquire(KEY)  # connections and script loading are counted below, not here
    await reference.hit(item, "uncontended", *KEY)

    async def run_ours() -> None:
        for _ in range(per_round):
            await ours.try_acquire(KEY)

    async def run_reference() -> None:
        for _ in range(per_round):
            assert await reference.hit(item, "uncontended", *KEY)

    times: dict[str, list[float]] = {"lmi": [], "limits": []}
    commands: dict[str, list[tuple[int, int]]] = {"lmi": [], "limits": []}
    for round_index in range(rounds):
        order = [("lmi", run_ours), ("limits", run_reference)]
        for name, run in order if round_index % 2 == 0 else order[::-1]:
            before = counter.snapshot()
            started = time.perf_counter()
            await run()
            times[name].append((time.perf_counter() - started) / per_round)
            after = counter.snapshot()
            commands[name].append((after[0] - before[0] - 1, after[1] - before[1]))  # minus our ECHO mark
    await ours.aclose()

    print(f"1. uncontended acquisitions ({rounds} interleaved rounds of {per_round}, weight 1)")
    for name in ("lmi", "limits"):
        client = sum(c for c, _ in commands[name]) / (rounds * per_round)
        scripted = sum(s for _, s in commands[name]) / (rounds * per_round)
        latency = statistics.median(times[name]) * 1e6
        print(
            f"   {name:7s} {client:5.2f} round trips + {scripted:5.1f} in-script commands, "
            f"{latency:7.1f} µs each"
        )
    ratio = statistics.median(r / o for o, r in zip(times["lmi"], times["limits"], strict=True))
    print(
        f"   latency ratio limits/lmi (median of rounds): {ratio:.2f}   target: <= 2 commands per acquisition"
    )


# -- 2. memory -----------------------------------------------------------------------------------------


async def memory(url: str, acquisitions: int = 2000, weight: int = 2000) -> None:
    admin = redis.Redis.from_url(url)
    limit = f"{acquisitions * weight * 2} per 1 minute"
    ours = GlobalRateLimiter(rate_config={("client", "memory-bench"): limit}, redis_url=url)
    for _ in range(acquisitions):
        await ours.try_acquire(("client", "memory-bench"), weight=weight)
    our_keys = list(admin.scan_iter(match="lmi:rl:*memory-bench*"))
    our_bytes = sum(admin.memory_usage(key, samples=0) or 0 for key in our_keys)
    await ours.aclose()

    storage = RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy")
    reference = MovingWindowRateLimiter(storage)
    item = limits.parse(limit)
    started = time.perf_counter()
    for _ in range(acquisitions):
        assert await reference.hit(item, "memory-bench", cost=weight)
    reference_seconds = time.perf_counter() - started
    their_keys = [key for key in admin.scan_iter(match="*LIMITER/memory-bench/*")]
    their_bytes = sum(admin.memory_usage(key, samples=0) or 0 for key in their_keys)

    print(f"2. Redis memory after {acquisitions} acquisitions of weight {weight} (MEMORY USAGE, SAMPLES 0)")
    print(f"   lmi     {our_bytes / 1024:10.1f} KB in {len(our_keys)} keys   target: <= 256 KB")
    print(
        f"   limits  {their_bytes / 1024:10.1f} KB in {len(their_keys)} keys "
        f"(took {reference_seconds:.1f} s to fill)"
    )


# -- 3. contention -------------------------------------------------------------------------------------


async def _ours_waiters(url: str, start_at: float, stop_at: float) -> list[tuple[float, float]]:
    limiter = GlobalRateLimiter(rate_config={KEY: f"{RATE} per 1 second"}, redis_url=url)
    records: list[tuple[float, float]] = []

    async def waiter() -> None:
        while (remaining := stop_at - time.time()) > 0:
            try:
                granted_at = await limiter.try_acquire(KEY, acquire_timeout=remaining)
            except RateLimitTimeout:
                return
            records.append((granted_at, time.time()))

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(waiter() for _ in range(WAITERS)))
    await limiter.aclose()
    return records


async def _reference_waiters(url: str, start_at: float, stop_at: float) -> list[tuple[float, float]]:
    storage = RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy")
    limiter = MovingWindowRateLimiter(storage)
    item = limits.parse(f"{RATE} per 1 second")
    records: list[tuple[float, float]] = []

    async def waiter() -> None:
        while time.time() < stop_at:
            if await limiter.hit(item, *KEY):
                now = time.time()
                records.append((now, now))
            else:
                await asyncio.sleep(0.01)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(waiter() for _ in range(WAITERS)))
    return records


def run_waiters(kind: str, url: str, start_at: float, stop_at: float) -> list[tuple[float, float]]:
    waiters = _ours_waiters if kind == "lmi" else _reference_waiters
    return asyncio.run(waiters(url, start_at, stop_at))


def contention(url: str, counter: CommandCounter, with_reference: bool) -> None:
    print(f"3. contention: {PROCESSES} processes x {WAITERS} waiters, {RATE}/s limit, {RUN_SECONDS:g} s")
    context = multiprocessing.get_context("spawn")
    for kind in ["lmi", "limits"] if with_reference else ["lmi"]:
        redis.Redis.from_url(url).flushall()
        with context.Pool(PROCESSES) as pool:
            time.sleep(0.5)  # let the pool's processes start
            start_at = time.time() + 2.0
            stop_at = start_at + RUN_SECONDS
            before = counter.snapshot()
            results = pool.starmap(run_waiters, [(kind, url, start_at, stop_at)] * PROCESSES)
            after = counter.snapshot()
        records = [record for result in results for record in result]
        granted = [(at, 1) for at, _ in records if start_at <= at < stop_at]
        client_commands = after[0] - before[0] - 1
        acquired = len(granted)
        utilization = acquired / (RATE * RUN_SECONDS)
        exact = max_in_any_window(granted, 1.0)
        local = max_in_any_window([(returned, 1) for _, returned in records], 1.0)
        per_process = [len(result) for result in results]
        delays = sorted(returned - at for at, returned in records)
        delay_note = (
            f"; return - grant: median {statistics.median(delays) * 1e3:.1f} ms, "
            f"max {delays[-1] * 1e3:.1f} ms"
            if kind == "lmi" and delays
            else ""
        )
        print(
            f"   {kind:7s} {acquired:4d} acquired (per process {per_process}), "
            f"{client_commands / max(acquired, 1):7.2f} round trips per acquisition "
            f"(+{(after[1] - before[1]) / max(acquired, 1):.1f} in-script), utilization {utilization:.3f}, "
            f"max in any 1 s window: {exact} by grant time, {local} by local return time{delay_note}"
        )
    print("   targets: <= 5 commands per acquisition, utilization >= 0.95, at most 20 in any 1 s window")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="use this server (it is FLUSHALLed) instead of starting one")
    parser.add_argument(
        "--skip-reference-contention", action="store_true", help="skip the slow polling reference"
    )
    options = parser.parse_args()
    with redis_server() if options.redis_url is None else nullcontext(options.redis_url) as url:
        redis.Redis.from_url(url).flushall()
        counter = CommandCounter(url)
        await uncontended(url, counter)
        await memory(url)
        contention(url, counter, with_reference=not options.skip_reference_contention)


if __name__ == "__main__":
    asyncio.run(main())
