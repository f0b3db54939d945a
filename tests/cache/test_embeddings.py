"""Embeddings cached per text: a batch sends only the texts the cache lacks, and gets the same floats."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmi import GLOBAL_COST_TRACKER, EmbeddingBatchError, enable_cost_tracking
from lmi.cache.embeddings import decode_vector, encode_vector
from tests.embeddings.helpers import recorded_vectors, replayed_model
from tests.replay import ReplayServer

NEO = "openai-embeddings-495721"
WORDS = ["my", "name", "is", "neo"]


def sent(replay: ReplayServer) -> list[list[str]]:
    return [request.body["input"] for request in replay.requests_for(NEO)]


async def test_only_missing_texts_are_sent(replay: ReplayServer, tmp_path: Path) -> None:
    enable_cost_tracking(True)
    model = replayed_model(replay, NEO, batch_size=2, config={"cache": str(tmp_path / "c.db")})
    first = await model.embed_documents(["my", "name"])
    spent = model.total_cost
    assert spent > 0
    vectors = await model.embed_documents(["is", "my", "", "neo", "name", "is"])
    assert sent(replay) == [["my", "name"], ["is", "neo"]]  # "is" once, cached ones not at all
    expected = recorded_vectors(NEO, ["my", "name"]) + recorded_vectors(NEO, ["is", "neo"])
    by_word = dict(zip(WORDS, expected, strict=True))
    assert first == expected[:2]
    assert vectors[0] == by_word["is"]
    assert vectors[1] == by_word["my"]
    assert vectors[2] == [0.0] * model.ndim
    assert vectors[3:] == [by_word["neo"], by_word["name"], by_word["is"]]
    again = await model.embed_documents(WORDS)
    assert again == expected
    assert len(sent(replay)) == 2
    totals = GLOBAL_COST_TRACKER.by_model[model.name]
    assert totals.cache_hits == 2
    stats = await model._cache.stats()  # type: ignore[union-attr]
    assert stats.entries == 4
    assert stats.hits == 2 + 4
    assert stats.saved_usd == pytest.approx(totals.cache_saved_usd)


async def test_a_new_model_object_reads_what_another_stored(replay: ReplayServer, tmp_path: Path) -> None:
    config = {"cache": f"sqlite:///{tmp_path}/c.db"}
    await replayed_model(replay, NEO, config=config).embed_documents(WORDS)
    other = replayed_model(replay, NEO, config={**config, "kwargs": {"api_key": "sk-another"}})
    assert await other.embed_documents(WORDS) == recorded_vectors(NEO, WORDS)
    assert len(sent(replay)) == 1


async def test_dimensions_are_part_of_the_key(replay: ReplayServer, tmp_path: Path) -> None:
    config = {"cache": str(tmp_path / "c.db")}
    await replayed_model(replay, NEO, config=config).embed_documents(WORDS)
    smaller = replayed_model(replay, NEO, config=config, ndim=256)
    with pytest.raises(EmbeddingBatchError, match="1536-dimensional"):  # sent: the recording is 1536-d
        await smaller.embed_documents(WORDS[:2])
    assert len(sent(replay)) == 2


def test_vectors_round_trip_exactly() -> None:
    float32 = [0.5, -0.25, 1.0]
    float64 = [0.1, 0.2, 0.30000000000000004]
    assert encode_vector(float32).startswith(b"f4")
    assert len(encode_vector(float32)) == 2 + 4 * 3
    assert decode_vector(encode_vector(float32)) == float32
    assert decode_vector(encode_vector(float64)) == float64
