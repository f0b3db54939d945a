"""Dense embeddings: 640 documents in batches of 16 against a loopback server answering after 50 ms.

LiteLLMEmbeddingModel with its default bound on batches in flight, side by side with the same model
sending the batches one after another (``config["concurrency"] = 1``); also shown, the concurrent model
asking for float lists instead of base64 (what the base64 default saves). The server, in a child process,
waits ``--latency`` seconds and answers in the shape of the recorded OpenAI exchange
(tests/recordings/openai-embeddings-495721.json): one recorded 1536-float vector per input, in order,
as float lists or, when the request asks for base64 like OpenAI's API, as base64 float32s.
Measured interleaved in short rounds; the figure is the median of per-round ratios.

    python bench/embed_concurrency.py [--docs 640] [--batch-size 16] [--latency 0.05] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import multiprocessing
import os
import statistics
import struct
import time
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from lmi import LiteLLMEmbeddingModel
from lmi.embeddings.litellm import DEFAULT_CONCURRENCY

RECORDING = Path(__file__).parents[1] / "tests" / "recordings" / "openai-embeddings-495721.json"


def serve(port_queue: Any, latency: float) -> None:
    """Answer every POST after ``latency`` seconds with one recorded vector per input."""
    template = json.loads(json.loads(RECORDING.read_text())["exchanges"][0]["response"])
    vectors = recorded_vectors()

    @cache
    def payload(count: int, encoding_format: str) -> bytes:
        """As OpenAI answers: float lists, or base64 little-endian float32s when asked for base64."""
        if encoding_format == "base64":
            encoded = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
        else:
            encoded = vectors
        data = [
            {"object": "embedding", "index": i, "embedding": encoded[i % len(encoded)]} for i in range(count)
        ]
        usage = {"prompt_tokens": count, "total_tokens": count}
        return json.dumps({**template, "data": data, "usage": usage}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            time.sleep(latency)
            answer = payload(len(body["input"]), body.get("encoding_format") or "float")
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def recorded_vectors() -> list[list[float]]:
    response = json.loads(json.loads(RECORDING.read_text())["exchanges"][0]["response"])
    return [item["embedding"] for item in sorted(response["data"], key=lambda item: item["index"])]


async def run(model: LiteLLMEmbeddingModel, texts: list[str]) -> float:
    started = time.perf_counter()
    vectors = await model.embed_documents(texts)
    elapsed = time.perf_counter() - started
    expected = recorded_vectors()
    assert len(vectors) == len(texts)
    for index in (0, len(vectors) - 1):  # what came back (base64 float32s) is what the server sent
        assert all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(vectors[index], expected[index % 4], strict=True)
        )
    return elapsed


async def main(docs: int, batch_size: int, latency: float, rounds: int) -> None:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=serve, args=(port_queue, latency), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=30)
        kwargs = {"api_base": f"http://127.0.0.1:{port}/v1", "api_key": "sk-bench-not-a-real-key"}
        models = {
            "concurrent": LiteLLMEmbeddingModel(batch_size=batch_size, config={"kwargs": kwargs}),
            "sequential": LiteLLMEmbeddingModel(
                batch_size=batch_size, config={"kwargs": kwargs, "concurrency": 1}
            ),
            # For comparison only: float lists, as litellm asks when left alone.
            "float": LiteLLMEmbeddingModel(
                batch_size=batch_size, config={"kwargs": {**kwargs, "encoding_format": "float"}}
            ),
        }
        texts = [f"document {i}: a short passage about protein folding and binding" for i in range(docs)]
        for model in models.values():
            await run(model, texts[: batch_size * 2])  # warm up: litellm import, connections

        ratios: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in models}
        for round_number in range(rounds):
            order = list(models) if round_number % 2 == 0 else list(reversed(models))
            timings = {name: await run(models[name], texts) for name in order}
            for name, elapsed in timings.items():
                times[name].append(elapsed)
            ratios.append(timings["sequential"] / timings["concurrent"])
    finally:
        server.terminate()
        server.join()

    batches = -(-docs // batch_size)
    setup = f"{docs} documents, {batches} batches of {batch_size}, {latency * 1000:.0f} ms per request"
    print(f"{setup}, {rounds} interleaved rounds")
    labels = {
        "concurrent": f"concurrent (default bound {DEFAULT_CONCURRENCY}), base64",
        "sequential": "one batch after another, base64",
        "float": f"concurrent (bound {DEFAULT_CONCURRENCY}), float lists",
    }
    for name, label in labels.items():
        print(f"  {label:40s} {statistics.median(times[name]) * 1000:8.0f} ms")
    print(f"  speed-up (median of per-round ratios): {statistics.median(ratios):.1f}x (target ≥ 5x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.batch_size, args.latency, args.rounds))
