"""A small asyncio HTTP/1.1 server for the load test, run in its own process.

Every ``POST`` is answered with one recorded exchange (keep-alive, no threads per connection), and its
arrival time (``time.monotonic()``, the same clock in every process on Linux) is kept; ``GET /arrivals``
returns them as JSON. ``python -m tests.reliability.load_server RECORDING`` prints its port, then serves
until stdin closes; :func:`serving` does that for a test, :func:`stats` reads what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.replay import load_recording


class LoadServer:
    def __init__(self, recording: str) -> None:
        exchange = load_recording(recording)[0]
        body = exchange["response"].encode()
        head = (
            f"HTTP/1.1 {exchange['status']} OK\r\ncontent-type: {exchange['content_type']}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.answer = head.encode() + body
        self.arrivals: list[float] = []
        self.open_connections = 0
        self.max_open_connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /arrivals"):
                    stats = {"arrivals": self.arrivals, "max_open_connections": self.max_open_connections}
                    payload = json.dumps(stats).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"content-length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                else:
                    self.arrivals.append(time.monotonic())
                    writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client closed its connection, or we are shutting down
        finally:
            self.open_connections -= 1
            writer.close()


async def main(recording: str) -> None:
    server = LoadServer(recording)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=4096)
    print(listener.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the test closes stdin to stop us
    listener.close()


@contextlib.contextmanager
def serving(recording: str) -> Iterator[int]:
    """The port of a load server answering with ``recording``, run in its own process while in use."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.load_server", recording],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        yield int(process.stdout.readline())
    finally:
        process.stdin.close()  # the server stops when its stdin closes
        process.wait(timeout=10)


def stats(port: int) -> dict[str, object]:
    """``{"arrivals": [monotonic times], "max_open_connections": n}`` of the server on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/arrivals", timeout=10) as response:
        return dict(json.loads(response.read()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
