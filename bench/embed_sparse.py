"""Sparse embeddings: documents per second, SparseEmbeddingModel vs a plain per-document implementation.

The reference encodes each document with tiktoken and counts buckets with ``collections.Counter``. Two
floors are shown, tokenization alone with no counting: tiktoken per document (``encode_ordinary`` in a
loop) and tiktoken's batch encoder (``encode_ordinary_batch``, a thread pool). Measured interleaved in
short rounds in one process; the figure is the median of per-round ratios.

    python bench/embed_sparse.py [--docs 256] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from collections import Counter

from lmi import SparseEmbeddingModel
from lmi._tokenizer import cl100k

VOCABULARY = (
    "protein folding binds receptor cell membrane enzyme kinetics the of and in to a is that for with as "
    "mitochondria genome expression pathway signal transduction inhibitor assay sample data model result "
    "analysis significant increase decrease observed measured control treatment group patients study "
    "CRISPR Cas9 RNA-seq p<0.05 (n=12) 3.5-fold 37°C μM IC50 — et al., Fig. 2B; Table 1"
)


def documents(count: int, characters: int = 1000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocabulary = VOCABULARY.split()
    docs = []
    for _ in range(count):
        words: list[str] = []
        while sum(map(len, words)) + len(words) < characters:
            words.append(rng.choice(vocabulary))
        docs.append(" ".join(words)[:characters])
    return docs


def reference(texts: list[str], ndim: int) -> list[list[float]]:
    """Per document: tiktoken encode, Counter of ids mod ndim, over the token count."""
    encoding = cl100k()
    vectors = []
    for text in texts:
        tokens = encoding.encode_ordinary(text)
        counts = Counter(token % ndim for token in tokens)
        vectors.append([counts[bucket] / len(tokens) if tokens else 0.0 for bucket in range(ndim)])
    return vectors


async def main(count: int, rounds: int) -> None:
    model = SparseEmbeddingModel()
    texts = documents(count)
    encoding = cl100k()
    ours = await model.embed_documents(texts)  # warm up; and the two agree
    theirs = reference(texts, model.ndim)
    for mine, reference_vector in zip(ours, theirs, strict=True):
        assert all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(mine, reference_vector, strict=True))

    ratios: list[float] = []
    rates: dict[str, list[float]] = {"ours": [], "reference": [], "loop": [], "batch": []}
    for round_number in range(rounds):
        timings: dict[str, float] = {}
        order = list(rates)
        if round_number % 2:
            order.reverse()
        for name in order:
            started = time.perf_counter()
            if name == "ours":
                await model.embed_documents(texts)
            elif name == "reference":
                reference(texts, model.ndim)
            elif name == "loop":
                [encoding.encode_ordinary(text) for text in texts]
            else:
                encoding.encode_ordinary_batch(texts)
            timings[name] = time.perf_counter() - started
            rates[name].append(count / timings[name])
        ratios.append(timings["reference"] / timings["ours"])

    print(f"{count} documents of ~1,000 characters, ndim={model.ndim}, {rounds} interleaved rounds")
    labels = {
        "ours": "SparseEmbeddingModel.embed_documents",
        "reference": "reference: per-document tiktoken + Counter",
        "loop": "floor: tiktoken encode_ordinary, per document",
        "batch": "floor: tiktoken encode_ordinary_batch",
    }
    for name, label in labels.items():
        print(f"  {label:48s} {statistics.median(rates[name]):10,.0f} docs/s")
    speedup = statistics.median(ratios)
    print(f"  speed-up vs reference (median of per-round ratios): {speedup:.2f}x (target ≥ 1.3x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.rounds))
