"""LiteLLMEmbeddingModel against recorded OpenAI embedding exchanges: bodies sent, batches, order, ndim."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmi import GLOBAL_COST_TRACKER, LiteLLMEmbeddingModel, cost_tracking_ctx
from lmi._lazy import litellm
from lmi._tokenizer import cl100k
from lmi.embeddings import EmbeddingBatchError
from lmi.embeddings.litellm import decode_vector, vectors_by_index
from tests.embeddings.helpers import (
    recorded_exchange,
    recorded_prompt_tokens,
    recorded_vectors,
    replayed_model,
)
from tests.replay import Fault, ReplayServer

NEO = "openai-embeddings-495721"  # ["my", "name", "is", "neo"] whole, then in halves; no dimensions
DIM8 = "openai-embeddings-65ce54"  # ["test"], dimensions=8
DIM1536 = "openai-embeddings-a9df17"  # ["Hello world", "Test"], dimensions=1536
ONE = "openai-embeddings-c41734"  # ["test1"]
WORDS = ["my", "name", "is", "neo"]


def global_limiter() -> Any:
    """``lmi.rate_limiter.GLOBAL_LIMITER``; these tests skip until that module exists."""
    module = pytest.importorskip("lmi.rate_limiter")
    if not hasattr(module, "GLOBAL_LIMITER"):
        pytest.skip("lmi.rate_limiter has no GLOBAL_LIMITER yet")
    return module.GLOBAL_LIMITER


def sent_inputs(replay: ReplayServer, recording: str) -> list[list[str]]:
    return sorted(request.body["input"] for request in replay.requests_for(recording))


async def test_one_batch_returns_the_recorded_vectors_in_order(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO)

    vectors = await model.embed_documents(WORDS)

    assert vectors == recorded_vectors(NEO, WORDS)
    (request,) = replay.requests_for(NEO)
    assert request.path == "/v1/embeddings"
    assert request.body["input"] == WORDS
    assert request.body["model"] == "text-embedding-3-small"
    assert "dimensions" not in request.body  # ndim was inferred, not asked for
    assert request.body["encoding_format"] == "base64"


async def test_openai_models_ask_for_base64_unless_told_otherwise(replay: ReplayServer) -> None:
    await replayed_model(replay, NEO).embed_documents(WORDS)
    await replayed_model(replay, NEO, config={"kwargs": {"encoding_format": "float"}}).embed_documents(WORDS)

    assert [request.body["encoding_format"] for request in replay.requests_for(NEO)] == ["base64", "float"]


def test_base64_vectors_decode_to_the_float32_values_openai_encodes() -> None:
    recorded = recorded_vectors(NEO, WORDS)[0]
    # OpenAI's documented base64 format: the vector's little-endian float32 bytes.
    encoded = base64.b64encode(struct.pack(f"<{len(recorded)}f", *recorded)).decode()

    decoded = decode_vector(encoded)

    assert decoded == list(struct.unpack(f"<{len(recorded)}f", struct.pack(f"<{len(recorded)}f", *recorded)))
    assert decoded == pytest.approx(recorded, rel=1e-6)
    assert decode_vector(recorded) is recorded  # float lists pass through


async def test_batches_split_the_input_and_are_reassembled_in_order(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2)

    vectors = await model.embed_documents(WORDS)

    assert sent_inputs(replay, NEO) == [["is", "neo"], ["my", "name"]]
    assert vectors == recorded_vectors(NEO, ["my", "name"]) + recorded_vectors(NEO, ["is", "neo"])


async def test_batch_size_can_come_from_config(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, config={"batch_size": 2})
    assert model.batch_size == 2

    await model.embed_documents(WORDS)

    assert sent_inputs(replay, NEO) == [["is", "neo"], ["my", "name"]]
    with pytest.raises(ValueError, match="disagree"):
        LiteLLMEmbeddingModel(batch_size=4, config={"batch_size": 2})


async def test_batches_run_concurrently_and_a_slow_first_batch_keeps_its_place(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2)
    await model.embed_documents(["my", "name"])  # first use: litellm import and connection setup
    replay.clear()
    replay.inject(NEO, Fault(delay=0.5, replay=True, times=1))  # whichever batch arrives first is slower
    replay.inject(NEO, Fault(delay=0.4, replay=True, times=1))

    vectors = await model.embed_documents(WORDS)

    # The server's own log: the second batch arrived while the first was still held (one after the
    # other, it would come 0.4 s later at the earliest).
    arrivals = sorted(received.at for received in replay.requests_for(NEO))
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] < 0.4
    assert sent_inputs(replay, NEO) == [["is", "neo"], ["my", "name"]]
    assert vectors == recorded_vectors(NEO, ["my", "name"]) + recorded_vectors(NEO, ["is", "neo"])


async def test_concurrency_bound_is_honoured(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2, config={"concurrency": 1})
    await model.embed_documents(["my", "name"])
    replay.clear()
    replay.inject(NEO, Fault(delay=0.2, replay=True, times=2))

    started = time.perf_counter()
    await model.embed_documents(WORDS)

    assert time.perf_counter() - started >= 0.4  # the second batch waited for the first


async def test_given_ndim_is_sent_as_dimensions(replay: ReplayServer) -> None:
    model = replayed_model(replay, DIM8, ndim=8)

    vector = await model.embed_document("test")

    assert vector == recorded_vectors(DIM8, ["test"])[0]
    assert len(vector) == model.ndim == 8
    assert replay.requests_for(DIM8)[0].body["dimensions"] == 8


async def test_given_native_ndim_is_still_sent(replay: ReplayServer) -> None:
    model = replayed_model(replay, DIM1536, ndim=1536)

    vectors = await model.embed_documents(["Hello world", "Test"])

    assert vectors == recorded_vectors(DIM1536, ["Hello world", "Test"])
    assert replay.requests_for(DIM1536)[0].body["dimensions"] == 1536


async def test_fixed_size_model_gets_no_dimensions(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, name="text-embedding-ada-002", ndim=1536)

    await model.embed_documents(WORDS)

    assert "dimensions" not in replay.requests_for(NEO)[0].body


def test_ndim_is_inferred_from_litellms_model_map() -> None:
    for name in ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"):
        assert LiteLLMEmbeddingModel(name=name).ndim == litellm().model_cost[name]["output_vector_size"]
    default = LiteLLMEmbeddingModel()
    assert default.name == "text-embedding-3-small"
    assert default.batch_size == 16


def test_repr_keeps_api_keys_out_of_logs() -> None:
    model = LiteLLMEmbeddingModel(config={"kwargs": {"api_key": "sk-secret-value"}})
    assert "sk-secret-value" not in repr(model)
    assert "text-embedding-3-small" in repr(model)


@pytest.mark.filterwarnings("ignore::lmi.cost.UnknownModelPriceWarning")
async def test_unknown_model_learns_ndim_from_the_response(replay: ReplayServer) -> None:
    model = replayed_model(replay, ONE, name="openai/my-own-embedder")
    assert model.ndim is None

    vectors = await model.embed_documents(["test1"])

    assert model.ndim == len(vectors[0]) == len(recorded_vectors(ONE, ["test1"])[0])


async def test_a_response_of_the_wrong_size_is_an_error(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, ndim=8)  # the recording answers 1536 floats whatever is asked

    with pytest.raises(EmbeddingBatchError, match="ndim=8"):
        await model.embed_documents(["my", "name"])


async def test_inputs_over_the_token_limit_are_truncated(replay: ReplayServer) -> None:
    limit = litellm().model_cost["text-embedding-3-small"]["max_input_tokens"]
    encoding = cl100k()
    long_text = "the quick brown fox jumps. " * (limit // 4)  # several tokens per repeat: over the limit
    assert len(encoding.encode_ordinary(long_text)) > limit
    model = replayed_model(replay, ONE)

    vectors = await model.embed_documents([long_text])

    (sent,) = replay.requests_for(ONE)[0].body["input"]
    assert len(encoding.encode_ordinary(sent)) == limit
    assert long_text.startswith(sent)
    assert len(vectors) == 1


async def test_empty_strings_get_zero_vectors_and_are_not_sent(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO)

    vectors = await model.embed_documents(["", "my", "", "name"])

    assert replay.requests_for(NEO)[0].body["input"] == ["my", "name"]
    my, name = recorded_vectors(NEO, ["my", "name"])
    assert vectors == [[0.0] * 1536, my, [0.0] * 1536, name]
    assert await model.embed_documents([]) == []


@pytest.mark.parametrize(("texts", "index"), [(["a", None], 1), ([3, "a"], 0), (["a", "b", b"c"], 2)])
async def test_non_string_items_are_a_type_error_naming_the_index(
    replay: ReplayServer, texts: list, index: int
) -> None:
    model = replayed_model(replay, NEO)

    with pytest.raises(TypeError, match=rf"texts\[{index}\]"):
        await model.embed_documents(texts)
    with pytest.raises(TypeError, match="single str"):
        await model.embed_documents("my name")
    with pytest.raises(TypeError):
        await model.embed_document(None)  # type: ignore[arg-type]
    assert replay.received == []


async def test_a_failing_batch_is_named_and_nothing_is_returned(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2, config={"concurrency": 1})
    replay.inject(NEO, Fault(status=400, times=1))

    with pytest.raises(EmbeddingBatchError) as caught:
        await model.embed_documents(["", "my", "name", "is", "neo"])

    error = caught.value
    assert (error.batch, error.batches, error.first, error.last) == (0, 2, 1, 2)  # "" is not sent
    assert "batch 1 of 2 (texts 1..2)" in str(error)
    assert getattr(error.__cause__, "status_code", None) == 400
    assert len(replay.requests_for(NEO)) == 1  # the run stopped at the failure


async def test_failing_concurrent_batches_raise_one_error_and_leave_no_tasks(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2)
    replay.inject(NEO, Fault(status=400, times=None))

    with pytest.raises(EmbeddingBatchError, match=r"batch [12] of 2") as caught:
        await model.embed_documents(WORDS)

    assert (caught.value.first, caught.value.last) in {(0, 1), (2, 3)}
    assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())


async def test_cost_is_recorded_from_the_billed_usage(replay: ReplayServer) -> None:
    model = replayed_model(replay, NEO, batch_size=2)
    price = litellm().model_cost["text-embedding-3-small"]["input_cost_per_token"]
    billed = recorded_prompt_tokens(NEO, ["my", "name"]) + recorded_prompt_tokens(NEO, ["is", "neo"])
    before = GLOBAL_COST_TRACKER.by_model.get("text-embedding-3-small")
    before_tokens = before.prompt_tokens if before else 0

    with cost_tracking_ctx():
        await model.embed_documents(WORDS)

    after = GLOBAL_COST_TRACKER.by_model["text-embedding-3-small"]
    assert after.prompt_tokens - before_tokens == billed
    assert model.total_prompt_tokens == billed
    assert model.total_cost == pytest.approx(billed * price)


async def test_progress_bar_counts_batches_on_stderr(
    replay: ReplayServer, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("tqdm")
    quiet = replayed_model(replay, NEO, batch_size=2)
    await quiet.embed_documents(WORDS)  # progress unset and stderr not a terminal: no bar
    assert capsys.readouterr().err == ""

    shown = replayed_model(replay, NEO, batch_size=2, config={"progress": True})
    await shown.embed_documents(WORDS)

    assert "2/2" in capsys.readouterr().err


async def test_rate_limit_charges_tokens_to_the_global_limiter(replay: ReplayServer) -> None:
    limiter = global_limiter()
    name = "openai/text-embedding-3-small"  # a key no other test charges
    model = replayed_model(replay, NEO, name=name, batch_size=2, config={"rate_limit": "1000 per minute"})
    tokens = sum(len(ids) for ids in cl100k().encode_ordinary_batch(WORDS))

    await model.embed_documents(WORDS)

    status = await limiter.rate_limit_status()
    assert status[("client", name)]["n_items_in_period"] == tokens


async def test_rate_limit_is_settled_to_the_billed_tokens_and_refunded_on_failure(
    replay: ReplayServer,
) -> None:
    limiter = global_limiter()
    name = "openai/text-embedding-3-small#settle"  # a key no other test charges
    billed = json.loads(recorded_exchange(ONE, ["test1"])["response"])
    billed["usage"]["prompt_tokens"] = billed["usage"]["total_tokens"] = 5  # the provider's count, not ours
    replay.inject(ONE, Fault(status=200, body=json.dumps(billed), times=1))
    model = replayed_model(
        replay,
        ONE,
        name=name,
        config={"rate_limit": "1000 per minute", "kwargs": {"model": "text-embedding-3-small"}},
    )
    await model.embed_documents(["test1"])
    status = await limiter.rate_limit_status()
    assert status[("client", name)]["n_items_in_period"] == 5

    replay.inject(ONE, Fault(status=400, times=1))
    with pytest.raises(EmbeddingBatchError):
        await model.embed_documents(["test1"])
    assert len(replay.requests_for(ONE)) == 2  # the failed batch did reach the server
    status = await limiter.rate_limit_status()
    assert status[("client", name)]["n_items_in_period"] == 5  # and its tokens were handed back


async def test_a_batch_heavier_than_the_rate_limit_fails_before_sending(replay: ReplayServer) -> None:
    global_limiter()
    model = replayed_model(
        replay, NEO, name="openai/text-embedding-3-large", config={"rate_limit": "1/minute"}
    )

    with pytest.raises(EmbeddingBatchError) as caught:
        await model.embed_documents(["my", "name"])

    assert isinstance(caught.value.__cause__, TimeoutError)
    assert replay.requests_for(NEO) == []


def _with_indices(indices: list[int]) -> Callable[[str], str]:
    """The recorded response with each item's ``index`` replaced (vectors left where they were)."""

    def rewrite(body: str) -> str:
        response = json.loads(body)
        assert len(response["data"]) == len(indices)
        for item, index in zip(response["data"], indices, strict=True):
            item["index"] = index
        return json.dumps(response)

    return rewrite


@pytest.mark.parametrize("transport", ["native", "litellm"])
@pytest.mark.parametrize("indices", [[0, 1, 0, 1], [0, 1, 2, 2], [1, 2, 3, 4], [0, 1, 2, -1]])
async def test_indices_that_do_not_cover_the_batch_fail_it(
    replay: ReplayServer, indices: list[int], transport: str
) -> None:
    replay.inject(NEO, Fault(rewrite=_with_indices(indices)))
    config = {"kwargs": {"encoding_format": "float"}, "transport": transport}
    model = replayed_model(replay, NEO, config=config)

    with pytest.raises(EmbeddingBatchError) as caught:
        await model.embed_documents(WORDS)

    assert "indices" in str(caught.value)
    assert str(indices) in str(caught.value)
    assert (caught.value.first, caught.value.last) == (0, 3)


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_vectors_are_placed_by_their_index_not_their_position(
    replay: ReplayServer, transport: str
) -> None:
    replay.inject(NEO, Fault(rewrite=_with_indices([2, 0, 3, 1])))
    config = {"kwargs": {"encoding_format": "float"}, "transport": transport}
    model = replayed_model(replay, NEO, config=config)

    vectors = await model.embed_documents(WORDS)

    sent = [item["embedding"] for item in recorded_exchange(NEO, WORDS)["body"]["data"]]
    assert vectors == [sent[1], sent[3], sent[0], sent[2]]


@settings(max_examples=200, deadline=None, database=None)
@given(indices=st.lists(st.integers(min_value=-1, max_value=6), min_size=1, max_size=6))
def test_embedding_indices_must_be_a_permutation(indices: list[int]) -> None:
    data = [{"index": index, "embedding": [float(position)]} for position, index in enumerate(indices)]
    if sorted(indices) != list(range(len(indices))):
        with pytest.raises(ValueError, match="exactly once"):
            vectors_by_index(data, len(indices))
        return
    vectors = vectors_by_index(data, len(indices))
    assert [vectors[index] for index in indices] == [item["embedding"] for item in data]


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_a_batch_that_never_reached_the_server_hands_its_tokens_back(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A limit of exactly one batch per 30 s: had the refused batch kept its tokens, the next one would
    # wait 30 s (here: a RateLimitTimeout after 3 s); handed back, it is sent at once.
    import lmi.rate_limiter
    from lmi.rate_limiter import GlobalRateLimiter

    limiter = GlobalRateLimiter(use_in_memory=True)
    monkeypatch.setattr(lmi.rate_limiter, "GLOBAL_LIMITER", limiter)
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "3")
    tokens = sum(len(ids) for ids in cl100k().encode_ordinary_batch(WORDS))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])  # closed: nothing listens there, connections are refused
    kwargs = {"api_base": f"http://127.0.0.1:{port}/{NEO}/v1", "api_key": "sk-test-not-a-real-key"}
    config = {"rate_limit": f"{tokens} per 30 seconds", "transport": transport, "kwargs": kwargs}
    model = LiteLLMEmbeddingModel(config=config)
    with pytest.raises(EmbeddingBatchError):
        await model.embed_documents(WORDS)
    server = ReplayServer(port=port).start()
    try:
        started = time.monotonic()
        assert await model.embed_documents(WORDS) == recorded_vectors(NEO, WORDS)
        assert time.monotonic() - started < 2.5
        assert len(server.requests_for(NEO)) == 1
    finally:
        server.stop()
