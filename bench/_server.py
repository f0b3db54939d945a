"""A small, fast loopback server answering OpenAI chat requests with a recorded real response.

Used by the CPU and memory benchmarks, which run it in a separate process so that only the client's CPU
time is measured. It speaks just enough HTTP/1.1 (keep-alive, Content-Length request bodies, chunked
responses) for httpx/aiohttp clients. ``/<recording>/v1/chat/completions`` answers with the first
exchange of ``tests/recordings/<recording>.json``: JSON, or server-sent events sent as one chunk each.

    python bench/_server.py --port 8766
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from functools import cache
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "recordings"
_EVENT_SEPARATOR = re.compile(r"(?<=\n\n)")


@cache
def _answer(recording: str) -> bytes:
    """The full HTTP response bytes for ``recording`` (built once)."""
    exchange = json.loads((RECORDINGS / f"{recording}.json").read_text())["exchanges"][0]
    status = exchange["status"]
    content_type = exchange["content_type"]
    body: str = exchange["response"]
    head = f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\n"
    if content_type.startswith("text/event-stream"):
        chunks = b"".join(
            f"{len(event.encode()):x}\r\n".encode() + event.encode() + b"\r\n"
            for event in _EVENT_SEPARATOR.split(body)
            if event
        )
        return (head + "transfer-encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    payload = body.encode()
    return (head + f"content-length: {len(payload)}\r\n\r\n").encode() + payload


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # wait for the rest of the body
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(" ", 2)[1]
            recording = path.strip("/").split("/", 1)[0]
            try:
                answer = _answer(recording)
            except FileNotFoundError:
                answer = _NOT_FOUND
            assert self.transport is not None
            self.transport.write(answer)


async def serve(port: int, ready: asyncio.Event | None = None) -> None:
    server = await asyncio.get_running_loop().create_server(_Connection, "127.0.0.1", port, backlog=512)
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8766)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
