"""fhlmi's embedding surface: modes, from_name, factory prefixes and kwargs, ``dimensions=``."""

from __future__ import annotations

import json

import litellm
import pytest
from pydantic import ValidationError

from lmi import (
    EmbeddingModel,
    EmbeddingModes,
    HybridEmbeddingModel,
    LiteLLMEmbeddingModel,
    SentenceTransformerEmbeddingModel,
    SparseEmbeddingModel,
    embedding_model_factory,
)
from tests.replay import ReplayServer


def test_embedding_modes() -> None:
    assert [m.value for m in EmbeddingModes] == ["document", "query"]
    assert EmbeddingModes.QUERY == "query"


async def test_set_mode_is_accepted_everywhere_and_reaches_hybrid_parts() -> None:
    seen: list[EmbeddingModes] = []

    class Recording(SparseEmbeddingModel):
        def set_mode(self, mode: EmbeddingModes) -> None:
            seen.append(mode)

    sparse = SparseEmbeddingModel()
    sparse.set_mode(EmbeddingModes.QUERY)  # a no-op, vectors unchanged
    assert await sparse.embed_document("a b") == await SparseEmbeddingModel().embed_document("a b")
    hybrid = HybridEmbeddingModel(models=[Recording(ndim=8), Recording(ndim=8)])
    hybrid.set_mode(EmbeddingModes.DOCUMENT)
    assert seen == [EmbeddingModes.DOCUMENT, EmbeddingModes.DOCUMENT]


def test_from_name() -> None:
    sparse = EmbeddingModel.from_name("sparse", ndim=32)
    assert isinstance(sparse, SparseEmbeddingModel)
    assert sparse.ndim == 32
    dense = EmbeddingModel.from_name("text-embedding-3-small", batch_size=4)
    assert isinstance(dense, LiteLLMEmbeddingModel)
    assert (dense.name, dense.batch_size, dense.ndim) == ("text-embedding-3-small", 4, 1536)
    hybrid = EmbeddingModel.from_name("hybrid-text-embedding-3-small")
    assert isinstance(hybrid, HybridEmbeddingModel)
    assert [m.name for m in hybrid.models] == ["text-embedding-3-small", "sparse"]
    assert hybrid.ndim == 1536 + 256


def test_factory_prefixes_and_kwargs_as_config() -> None:
    dense = embedding_model_factory(" litellm-text-embedding-3-small ", rate_limit="100/minute")
    assert isinstance(dense, LiteLLMEmbeddingModel)
    assert dense.name == "text-embedding-3-small"
    # fhlmi: factory kwargs are the config, which (given without "kwargs") gets litellm's retrying defaults
    assert dense.config == {"rate_limit": "100/minute", "kwargs": {"num_retries": 3, "timeout": 120}}
    local = embedding_model_factory("st-multi-qa-MiniLM-L6-cos-v1", device="cpu", batch_size=8)
    assert isinstance(local, SentenceTransformerEmbeddingModel)
    assert local.config == {"device": "cpu", "batch_size": 8}
    assert SentenceTransformerEmbeddingModel().name == "multi-qa-MiniLM-L6-cos-v1"
    for empty in ("st-", "litellm-", "hybrid-", "  "):
        with pytest.raises(ValueError, match="name"):
            embedding_model_factory(empty)


async def test_sparse_dimensions_is_ndim() -> None:
    model = SparseEmbeddingModel(dimensions=64)
    assert model.ndim == 64
    assert len(await model.embed_document("hello world")) == 64
    with pytest.raises(ValueError, match="disagree"):
        SparseEmbeddingModel(ndim=32, dimensions=64)


async def test_check_rate_limit_uses_config() -> None:
    from lmi.rate_limiter import GLOBAL_LIMITER

    name = "compat-check-embedder"  # a key no other test charges
    model = LiteLLMEmbeddingModel(name=name, config={"rate_limit": "1000/minute"})
    await model.check_rate_limit(400)
    status = await GLOBAL_LIMITER.rate_limit_status()
    assert status[("client", name)]["n_items_in_period"] == 400
    await SparseEmbeddingModel().check_rate_limit(10)  # no limit configured: nothing to wait for


def test_sparse_exposes_its_tokenizer() -> None:
    enc = SparseEmbeddingModel().enc
    assert enc.name == "cl100k_base"
    assert enc.decode(enc.encode("hello world")) == "hello world"


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_fhlmis_router_config_sends_the_named_deployment(replay: ReplayServer, transport: str) -> None:
    from tests.llms.transports.differential import cases

    case = next(iter(cases("/v1/embeddings")))
    request = case.exchange["request"]
    model = LiteLLMEmbeddingModel(
        name="my-embedder",  # a deployment name, not a model litellm knows
        ndim=request.get("dimensions"),
        batch_size=len(request["input"]),
        config={
            "model_list": [
                {"model_name": "other", "litellm_params": {"model": "text-embedding-3-large"}},
                {
                    "model_name": "my-embedder",
                    "litellm_params": {
                        "model": request["model"],
                        "api_base": replay.openai_base(case.recording),
                    },
                },
            ],
            "router_kwargs": {"timeout": 7, "routing_strategy": "simple-shuffle"},
            "pass_through_router": True,
            "transport": transport,
            "kwargs": {"encoding_format": request.get("encoding_format") or "float"},
        },
    )
    vectors = await model.embed_documents(request["input"])
    (received,) = replay.requests_for(case.recording)
    assert received.body["model"] == request["model"]
    assert len(vectors) == len(request["input"])
    price = litellm.model_cost[request["model"]]["input_cost_per_token"]
    usage = json.loads(case.exchange["response"])["usage"]["prompt_tokens"]
    assert model.total_cost == pytest.approx(price * usage)


def test_a_model_list_without_the_models_name_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="no entry named 'text-embedding-3-small'"):
        LiteLLMEmbeddingModel(config={"model_list": [{"model_name": "x", "litellm_params": {"model": "y"}}]})
