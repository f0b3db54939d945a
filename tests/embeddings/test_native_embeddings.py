"""OpenAI embeddings sent natively: the same vectors, tokens, cost and request body as through litellm."""

from __future__ import annotations

from typing import Any

import pytest

from lmi import LiteLLMEmbeddingModel
from tests.llms.transports.differential import cases
from tests.replay import ReplayServer

EMBEDDING_CASES = cases("/v1/embeddings")


def test_every_recording_is_covered() -> None:
    assert len(EMBEDDING_CASES) >= 7


async def _embed(replay: ReplayServer, case: Any, transport: str) -> tuple[list[list[float]], float, Any]:
    replay.clear()
    request = case.exchange["request"]
    kwargs: dict[str, Any] = {"api_base": replay.openai_base(case.recording)}
    if request.get("encoding_format"):
        kwargs["encoding_format"] = request["encoding_format"]
    model = LiteLLMEmbeddingModel(
        name=request["model"],
        ndim=request.get("dimensions"),
        batch_size=len(request["input"]),
        config={"kwargs": kwargs, "transport": transport},
    )
    vectors = await model.embed_documents(request["input"])
    (received,) = replay.requests_for(case.recording)
    return vectors, model.total_cost, received.body


@pytest.mark.parametrize("case", EMBEDDING_CASES, ids=str)
async def test_same_vectors_cost_and_body_on_both_transports(replay: ReplayServer, case: Any) -> None:
    ref_vectors, ref_cost, ref_body = await _embed(replay, case, "litellm")
    got_vectors, got_cost, got_body = await _embed(replay, case, "native")
    assert got_vectors == ref_vectors
    assert len(got_vectors) == len(case.exchange["request"]["input"])
    assert got_cost == ref_cost > 0
    assert got_body == ref_body


def test_native_refuses_a_provider_it_cannot_reach() -> None:
    model = LiteLLMEmbeddingModel(name="voyage/voyage-3", ndim=8, config={"transport": "native"})
    with pytest.raises(ValueError, match="native"):
        model._request_kwargs()
