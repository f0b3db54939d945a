"""CPU per embeddings batch: ``LiteLLMEmbeddingModel.embed_documents`` against ``litellm.aembedding``.

    python bench/embed_cpu.py                        # 20 rounds of 50 batches a side, 16 at once
    python bench/embed_cpu.py --transport litellm    # lmi on its litellm transport

The loopback server (``_server.py``, its own process) answers every request with a recorded real
OpenAI embeddings response (4 vectors of 1,536 floats). Both sides send the same batch of 4 texts with
the same parameters; only this process's CPU time is measured, in alternating rounds, and the figure is
the median of the per-round ratios (target <= 0.25 on the native transport).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import BENCH, server_process, summarize
from chat_cpu import Call, run_batch
from lmi import LiteLLMEmbeddingModel
from lmi._lazy import litellm

RECORDING = "openai-embeddings-495721"
MODEL = "text-embedding-3-small"
TEXTS = json.loads((BENCH.parent / "tests" / "recordings" / f"{RECORDING}.json").read_text())["exchanges"][0][
    "request"
]["input"]
KWARGS = {"api_key": "sk-bench", "encoding_format": "float"}


def lmi_call(root: str, transport: str) -> Call:
    config = {"kwargs": {"api_base": f"{root}/{RECORDING}/v1", **KWARGS}, "transport": transport}
    model = LiteLLMEmbeddingModel(name=MODEL, batch_size=16, config=config)
    return lambda: model.embed_documents(TEXTS)


def litellm_call(root: str) -> Call:
    aembedding = litellm().aembedding
    base = f"{root}/{RECORDING}/v1"
    return lambda: aembedding(model=MODEL, input=TEXTS, api_base=base, **KWARGS)


async def compare(root: str, transport: str, batches: int, rounds: int, concurrency: int) -> float:
    ours, reference = lmi_call(root, transport), litellm_call(root)
    vectors = await ours()
    theirs = [item["embedding"] for item in (await reference()).data]
    if vectors != theirs:
        raise SystemExit("lmi and litellm returned different vectors: the bench is broken")
    per_round = max(batches // rounds, 1)
    await run_batch(ours, per_round, concurrency)
    await run_batch(reference, per_round, concurrency)
    ours_cpu, reference_cpu = [], []
    for index in range(rounds):
        order = [(ours, ours_cpu), (reference, reference_cpu)]
        for call, sink in order[:: -1 if index % 2 else 1]:
            sink.append((await run_batch(call, per_round, concurrency))[0] / per_round)
    return summarize(
        f"CPU per embeddings batch of {len(TEXTS)} ({transport})", ours_cpu, reference_cpu, "ms", 1000,
        names=("lmi", "litellm"),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--batches", type=int, default=1000, help="batches per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--transport", choices=["auto", "litellm"], default="auto")
    args = parser.parse_args()
    with server_process() as root:
        ratio = asyncio.run(compare(root, args.transport, args.batches, args.rounds, args.concurrency))
    target = "target <= 0.25" if args.transport == "auto" else "the litellm transport"
    print(f"  -> median ratio {ratio:.3f} ({target})")


if __name__ == "__main__":
    main()
