"""HybridEmbeddingModel: concatenated shapes, ndim, concurrency, and the factory's hybrids."""

from __future__ import annotations

import pytest

from lmi import HybridEmbeddingModel, SparseEmbeddingModel, embedding_model_factory
from lmi._lazy import litellm
from lmi.embeddings import EmbeddingBatchError
from tests.embeddings.helpers import recorded_vectors, replayed_model
from tests.replay import Fault, ReplayServer

NEO = "openai-embeddings-495721"
DIM8 = "openai-embeddings-65ce54"
WORDS = ["my", "name", "is", "neo"]


async def test_rows_are_the_components_vectors_side_by_side(replay: ReplayServer) -> None:
    dense = replayed_model(replay, NEO, batch_size=2)
    sparse = SparseEmbeddingModel(ndim=16)
    hybrid = HybridEmbeddingModel(models=[dense, sparse])
    assert hybrid.ndim == 1536 + 16

    vectors = await hybrid.embed_documents(WORDS)

    dense_part = recorded_vectors(NEO, ["my", "name"]) + recorded_vectors(NEO, ["is", "neo"])
    sparse_part = await sparse.embed_documents(WORDS)
    assert [len(v) for v in vectors] == [hybrid.ndim] * 4
    assert vectors == [d + s for d, s in zip(dense_part, sparse_part, strict=True)]
    assert hybrid.name == "hybrid-text-embedding-3-small+sparse"


async def test_order_of_models_is_the_order_of_parts(replay: ReplayServer) -> None:
    dense = replayed_model(replay, DIM8, ndim=8)
    sparse = SparseEmbeddingModel(ndim=4)

    (vector,) = await HybridEmbeddingModel(models=[sparse, dense]).embed_documents(["test"])

    assert vector == (await sparse.embed_document("test")) + recorded_vectors(DIM8, ["test"])[0]


async def test_components_run_concurrently(replay: ReplayServer) -> None:
    first, second = replayed_model(replay, NEO), replayed_model(replay, NEO)
    hybrid = HybridEmbeddingModel(models=[first, second])
    await hybrid.embed_documents(WORDS)  # first use: litellm import, connections
    replay.clear()
    replay.inject(NEO, Fault(delay=0.4, replay=True, times=2))

    vectors = await hybrid.embed_documents(WORDS)

    # The server's own log: the second request arrived while the first was still held (one after the
    # other, it would come 0.4 s later at the earliest).
    arrivals = sorted(received.at for received in replay.requests_for(NEO))
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] < 0.4
    assert vectors[0] == recorded_vectors(NEO, WORDS)[0] * 2


def test_ndim_cannot_be_given() -> None:
    with pytest.raises(ValueError, match="sum of its models"):
        HybridEmbeddingModel(models=[SparseEmbeddingModel()], ndim=300)


async def test_a_failing_component_fails_the_whole_call(replay: ReplayServer) -> None:
    hybrid = HybridEmbeddingModel(models=[replayed_model(replay, NEO), SparseEmbeddingModel()])
    replay.inject(NEO, Fault(status=400, times=1))

    with pytest.raises(EmbeddingBatchError, match=r"texts 0\.\.3"):
        await hybrid.embed_documents(WORDS)


async def test_factory_hybrid_is_dense_plus_default_sparse(replay: ReplayServer) -> None:
    kwargs = {"api_base": replay.openai_base(NEO), "api_key": "sk-test-not-a-real-key"}
    hybrid = embedding_model_factory("hybrid-text-embedding-3-small", config={"kwargs": kwargs})
    assert isinstance(hybrid, HybridEmbeddingModel)
    dense_ndim = litellm().model_cost["text-embedding-3-small"]["output_vector_size"]
    assert hybrid.ndim == dense_ndim + SparseEmbeddingModel().ndim

    vectors = await hybrid.embed_documents(WORDS)

    assert [len(v) for v in vectors] == [hybrid.ndim] * 4
    assert vectors[0][:dense_ndim] == recorded_vectors(NEO, WORDS)[0]


@pytest.mark.filterwarnings("ignore::lmi.cost.UnknownModelPriceWarning")
async def test_ndim_is_filled_once_every_component_knows_its_own(replay: ReplayServer) -> None:
    dense = replayed_model(replay, NEO, name="openai/unlisted-embedder")
    hybrid = HybridEmbeddingModel(models=[dense, SparseEmbeddingModel(ndim=8)])
    assert hybrid.ndim is None

    await hybrid.embed_documents(WORDS)

    assert hybrid.ndim == 1536 + 8
