"""A real redis-server for the rate limiter tests, on a free loopback port, killed at the end."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from lmi.rate_limiter import GlobalRateLimiter

MakeLimiter = Callable[..., GlobalRateLimiter]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], deadline_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)  # the server is still starting; nothing else to wait on
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}")


class RedisServer:
    """A redis-server subprocess on a free loopback port, without persistence."""

    def __init__(self) -> None:
        if not shutil.which(REDIS_SERVER):
            pytest.skip(f"redis-server not found ({REDIS_SERVER}); install it (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._workdir = tempfile.TemporaryDirectory()
        self._start()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self._workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, self._process)
        except BaseException:
            self.kill()
            raise

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port (clients must reconnect)."""
        self._process.kill()
        self._process.wait(timeout=10)
        self._start()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._workdir.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://127.0.0.1:<port>`` of a redis-server shared by this test session."""
    server = RedisServer()
    yield server.url
    server.kill()


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone (which may kill it)."""
    server = RedisServer()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's server, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


def pause(server: RedisServer) -> None:
    """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
    server._process.send_signal(signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    server._process.send_signal(signal.SIGCONT)


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds limiters on each store (memory, then the session's Redis), closed after the test."""
    made: list[GlobalRateLimiter] = []

    def make(**kwargs: object) -> GlobalRateLimiter:
        if request.param == "redis":
            limiter = GlobalRateLimiter(redis_url=request.getfixturevalue("redis_url"), **kwargs)  # type: ignore[arg-type]
        else:
            limiter = GlobalRateLimiter(use_in_memory=True, **kwargs)  # type: ignore[arg-type]
        assert limiter.storage == request.param
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()
