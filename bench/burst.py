"""2,000 concurrent calls under a request limit: what the server sees, per transport.

    python bench/burst.py                     # native, then the litellm transport
    python bench/burst.py --calls 2000 --limit "200 per 2 seconds" --transport native

A loopback server (tests/reliability/load_server.py, its own process) notes when each request arrives.
The limiter grants at most LIMIT per PERIOD; the figure is the densest PERIOD the server saw (target:
<= LIMIT), which exceeds the limit when requests reach the server late and unevenly after their grant.
Uses the in-memory limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDING = "openai-chat-634cf7"
MESSAGES = [
    {"role": "system", "content": "Respond with single words."},
    {"role": "user", "content": "What is the meaning of the universe?"},
]


def densest(times: list[float], width: float) -> int:
    return max(bisect.bisect_left(times, start + width) - i for i, start in enumerate(times))


async def run(port: int, transport: str, calls: int, limit: str, model: str) -> float:
    from lmi import LiteLLMModel

    base = f"http://127.0.0.1:{port}/v1"
    config = {
        "name": model,
        "model": "openai/gpt-4o-mini",
        "api_base": base,
        "api_key": "sk-bench",
        "transport": transport,
        "request_limit": {model: limit},
        "num_retries": 0,
    }
    llm = LiteLLMModel(config=config)
    warm = LiteLLMModel(config={**config, "name": "warm", "request_limit": {}})
    await warm.call_single(MESSAGES)  # imports and connections: not part of the burst
    started = time.perf_counter()
    results = await asyncio.gather(*(llm.call_single(MESSAGES) for _ in range(calls)))
    assert all(r.text for r in results)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--limit", default="200 per 2 seconds")
    parser.add_argument("--transport", choices=["native", "litellm", "both"], default="both")
    args = parser.parse_args()
    count, _, period = args.limit.partition(" per ")
    seconds = float(period.split()[0]) if period.split()[0].replace(".", "").isdigit() else 1.0
    for transport in ["native", "litellm"] if args.transport == "both" else [args.transport]:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.load_server", RECORDING],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None
        assert server.stdin is not None
        try:
            port = int(server.stdout.readline())
            wall = asyncio.run(run(port, transport, args.calls, args.limit, f"burst-{transport}"))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/arrivals", timeout=10) as response:
                arrivals = sorted(json.loads(response.read())["arrivals"])[1:]  # without the warm-up call
        finally:
            server.stdin.close()
            server.wait(10)
        most = densest(arrivals, seconds)
        print(
            f"{transport}: {args.calls} calls in {wall:.1f} s; densest {seconds:g} s at the server: {most}"
            f" (limit {count}) -> {'ok' if most <= int(count) else 'OVER'}"
        )


if __name__ == "__main__":
    main()
