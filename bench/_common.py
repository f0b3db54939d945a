"""Shared pieces of the benchmarks: the loopback server process and the side-by-side statistics."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PLAIN_RECORDING = "openai-chat-634cf7"
STREAM_RECORDING = "openai-chat-stream-29f559"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    """Run ``_server.py`` in its own process (its CPU is not ours); yield its root URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(BENCH / "_server.py"), "--port", str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:  # wait for the port to accept connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("bench server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


def rss_mb() -> float:
    """Current resident set size of this process, in MB (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def summarize(
    label: str,
    ours: list[float],
    reference: list[float],
    unit: str,
    scale: float,
    names: tuple[str, str] = ("lmi", "reference"),
) -> float:
    """Print per-round figures and the median of per-round ratios (ours / reference); return it."""
    ratios = [a / b for a, b in zip(ours, reference, strict=True)]
    median = statistics.median(ratios)
    print(
        f"{label}: {names[0]} {statistics.median(ours) * scale:.3f} {unit}, "
        f"{names[1]} {statistics.median(reference) * scale:.3f} {unit}; "
        f"median ratio {median:.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    return median
