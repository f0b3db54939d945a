"""OpenTelemetry spans and metrics of recorded exchanges, read back through the SDK's in-memory exporters.

Expected values come from the recordings' own bodies and litellm's price map, never from lmi.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import litellm
import pytest
from aviary.core import Message

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is in the dev extra")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lmi import LiteLLMModel, enable_cost_ledger, enable_cost_tracking, telemetry
from lmi.cost import ledger, tracker
from tests.embeddings.helpers import replayed_model
from tests.llms.helpers import anthropic_model, openai_model, recorded
from tests.replay import Fault, ReplayServer, load_recording

PRICES = litellm.model_cost
PLAIN = "openai-chat-0b8092"  # "Please tell me a story", max_tokens=3
SINGLE_WORDS = "openai-chat-634cf7"
QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self, name_prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(name_prefix)]

    def one(self, name_prefix: str) -> ReadableSpan:
        (span,) = self.finished(name_prefix)
        return span

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    recorded_telemetry = Telemetry()
    telemetry.instrument(recorded_telemetry.tracer_provider, recorded_telemetry.meter_provider)
    yield recorded_telemetry
    telemetry.instrument()


@pytest.fixture
def cost_ledger(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(ledger, "_LEDGER", ledger._Ledger())
    monkeypatch.setattr(tracker, "_process_default", None)
    path = tmp_path / "costs.sqlite"
    enable_cost_ledger(path)
    yield path
    enable_cost_ledger(None)


def _rows(path: Any, columns: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT {columns} FROM cost_ledger ORDER BY id").fetchall()


def _hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def _openai_cost(body: dict[str, Any]) -> float:
    price, usage = PRICES[body["model"]], body["usage"]
    return (
        usage["prompt_tokens"] * price["input_cost_per_token"]
        + usage["completion_tokens"] * price["output_cost_per_token"]
    )


def _children(parent: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_nothing_is_recorded_without_a_provider() -> None:
    telemetry.instrument()
    assert telemetry.active() is None  # the API's stand-in providers: no SDK configured in this process


async def test_chat_span_follows_the_genai_conventions(replay: ReplayServer, otel: Telemetry) -> None:
    body = recorded(PLAIN)["body"]
    llm = openai_model(replay, PLAIN, max_tokens=3)

    result = await llm.call_single("Please tell me a story", temperature=0.5)

    chat = otel.one("chat ")
    assert chat.name == "chat gpt-4o-mini"
    assert chat.kind is SpanKind.CLIENT
    assert chat.parent is None
    assert chat.status.status_code is not StatusCode.ERROR
    attributes = dict(chat.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.request.max_tokens"] == 3
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.response.model"] == body["model"]
    # (gen_ai.response.id: litellm replaces Anthropic's message id with its own, so it is not compared.)
    assert attributes["gen_ai.response.model"] == body["model"]
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"]
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 0
    assert attributes["lmi.cost_usd"] == pytest.approx(_openai_cost(body), abs=1e-12)
    assert attributes["lmi.cache_hit"] is False
    assert "gen_ai.input.messages" not in attributes  # content only when asked for
    assert "gen_ai.output.messages" not in attributes
    (attempt,) = _children(chat, otel.finished())
    assert attempt.name == "attempt gpt-4o-mini"
    assert attempt.attributes["lmi.attempt"] == 1
    assert result.text == body["choices"][0]["message"]["content"]


async def test_cached_tokens_of_an_anthropic_call(replay: ReplayServer, otel: Telemetry) -> None:
    exchange = recorded("anthropic-messages-cache-1feb77", 1)
    body, request = exchange["body"], exchange["request"]
    llm = anthropic_model(
        replay, "anthropic-messages-cache-1feb77", "claude-sonnet-4-5-20250929", max_tokens=64000
    )
    messages = [Message(role="system", content=s["text"]) for s in request.get("system", [])]
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        messages.append(Message(role=message["role"], content=content))

    await llm.call_single(messages, temperature=0)

    attributes = dict(otel.one("chat ").attributes or {})
    usage = body["usage"]
    assert attributes["gen_ai.provider.name"] == "anthropic"
    # (gen_ai.response.id: litellm replaces Anthropic's message id with its own, so it is not compared.)
    assert attributes["gen_ai.response.model"] == body["model"]
    assert attributes["gen_ai.response.finish_reasons"] == (
        "stop" if body["stop_reason"] == "end_turn" else body["stop_reason"],
    )
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
    assert attributes["gen_ai.usage.input_tokens"] == (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]


async def test_content_is_recorded_only_when_asked(
    replay: ReplayServer, otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = recorded(PLAIN)["body"]
    monkeypatch.setenv(telemetry.CAPTURE_CONTENT_ENV, "true")
    await openai_model(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    monkeypatch.delenv(telemetry.CAPTURE_CONTENT_ENV)
    telemetry.instrument(otel.tracer_provider, otel.meter_provider, capture_content=True)
    await openai_model(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")

    for chat in otel.finished("chat "):
        inputs = json.loads(chat.attributes["gen_ai.input.messages"])
        outputs = json.loads(chat.attributes["gen_ai.output.messages"])
        assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "Please tell me a story"}]}]
        assert outputs[0]["parts"][0]["content"] == body["choices"][0]["message"]["content"]
        assert outputs[0]["finish_reason"] == "length"


async def test_metrics_token_usage_duration_and_cost(replay: ReplayServer, otel: Telemetry) -> None:
    body = recorded(PLAIN)["body"]
    started = time.perf_counter()
    await openai_model(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    elapsed = time.perf_counter() - started

    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == body["usage"]["prompt_tokens"]
    assert tokens["output"].sum == body["usage"]["completion_tokens"]
    assert tokens["input"].count == tokens["output"].count == 1
    for point in tokens.values():
        assert point.attributes["gen_ai.operation.name"] == "chat"
        assert point.attributes["gen_ai.provider.name"] == "openai"
        assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert point.attributes["gen_ai.response.model"] == body["model"]
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert 0 < duration.sum <= elapsed
    (cost,) = otel.points("lmi.client.cost")
    assert cost.value == pytest.approx(_openai_cost(body), abs=1e-12)


async def test_retries_are_child_spans_with_their_backoff(replay: ReplayServer, otel: Telemetry) -> None:
    replay.inject(SINGLE_WORDS, Fault(status=500, times=2))
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base(SINGLE_WORDS)}
    config = {
        "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}],
        "router_kwargs": {"retry_backoff": 0.05, "num_retries": 3},
    }
    await LiteLLMModel(name="gpt-4o-mini", config=config).call_single(QUESTION)

    spans = otel.finished()
    chat = otel.one("chat ")
    children = sorted(_children(chat, spans), key=lambda s: s.start_time)
    assert [s.name for s in children] == [
        "attempt gpt-4o-mini",
        "lmi.wait retry_backoff",
        "attempt gpt-4o-mini",
        "lmi.wait retry_backoff",
        "attempt gpt-4o-mini",
    ]
    attempts = [s for s in children if s.name.startswith("attempt")]
    assert [s.attributes["lmi.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert all(s.attributes["error.type"] for s in attempts[:2])
    for backoff in (s for s in children if s.name == "lmi.wait retry_backoff"):
        assert (backoff.end_time - backoff.start_time) / 1e9 >= 0.04
    assert chat.status.status_code is StatusCode.UNSET
    assert len(replay.requests_for(SINGLE_WORDS)) == 3


async def test_a_call_that_fails_is_an_error_span_and_an_error_metric(
    replay: ReplayServer, otel: Telemetry
) -> None:
    replay.inject(SINGLE_WORDS, Fault(status=400, times=None))
    llm = openai_model(replay, SINGLE_WORDS)
    # A plain bad request is not retried and reaches the caller as the provider's own class (as in fhlmi).
    with pytest.raises(litellm.BadRequestError):
        await llm.call_single(QUESTION)

    chat = otel.one("chat ")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "BadRequestError"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "BadRequestError"
    assert otel.points("gen_ai.client.token.usage") == []


async def test_rate_limit_waits_are_child_spans(replay: ReplayServer, otel: Telemetry) -> None:
    name = f"waits-{uuid.uuid4().hex[:8]}"
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base(SINGLE_WORDS)}
    config = {
        "model_list": [{"model_name": name, "litellm_params": params}],
        "request_limit": {name: "1 per 1 second"},
    }
    llm = LiteLLMModel(name=name, config=config)
    await llm.call_single(QUESTION)
    await llm.call_single(QUESTION)  # waits for the window to move

    spans = otel.finished()
    chats = sorted(otel.finished("chat "), key=lambda s: s.start_time)
    waits = []
    for chat in chats:
        (attempt,) = _children(chat, spans)
        (wait,) = _children(attempt, spans)
        assert wait.name == "lmi.wait rate_limit"
        assert wait.attributes["lmi.rate_limit_key"] == f"client|request|{name}"
        waits.append((wait.end_time - wait.start_time) / 1e9)
    assert waits[0] < 0.5
    assert waits[1] >= 0.3  # the second call waited for the one-second window


async def test_embeddings_span(replay: ReplayServer, otel: Telemetry) -> None:
    model = replayed_model(replay, "openai-embeddings-495721")
    await model.embed_documents(["my", "name", "is", "neo"])

    span = otel.one("embeddings ")
    attributes = dict(span.attributes or {})
    assert span.name == "embeddings text-embedding-3-small"
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.usage.input_tokens"] == 4  # the recording's usage.prompt_tokens
    assert attributes["gen_ai.embeddings.dimension.count"] == model.ndim
    price = PRICES["text-embedding-3-small"]["input_cost_per_token"]
    assert attributes["lmi.cost_usd"] == pytest.approx(4 * price, abs=1e-15)


async def test_ledger_rows_carry_the_calls_trace_and_span(
    replay: ReplayServer, otel: Telemetry, cost_ledger: Any
) -> None:
    replay.inject(SINGLE_WORDS, Fault(status=500, times=1))
    params = {"model": "gpt-4o-mini", "api_base": replay.openai_base(SINGLE_WORDS)}
    config = {
        "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}],
        "router_kwargs": {"retry_backoff": 0.01},
    }
    await LiteLLMModel(name="gpt-4o-mini", config=config).call_single(QUESTION)

    chat = otel.one("chat ")
    rows = _rows(cost_ledger, "trace_id, span_id, error, latency_s, cost_usd")
    assert [row[:3] for row in rows] == [(*_hex_ids(chat), "InternalServerError"), (*_hex_ids(chat), None)]
    assert rows[0][4] == 0
    assert rows[1][4] == pytest.approx(chat.attributes["lmi.cost_usd"])
    assert 0 < rows[1][3] < (chat.end_time - chat.start_time) / 1e9


async def test_without_tracing_ledger_ids_are_empty(replay: ReplayServer, cost_ledger: Any) -> None:
    enable_cost_tracking(True)
    await openai_model(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    assert _rows(cost_ledger, "trace_id, span_id") == [(None, None)]


class _RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("collector unreachable")


class _SlowExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        time.sleep(2.0)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class _BrokenProcessor(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("broken on start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("broken on end")


@pytest.mark.parametrize("broken", ["exporter", "processor"])
async def test_a_failing_exporter_or_processor_never_fails_the_call(
    replay: ReplayServer, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    if broken == "exporter":
        provider.add_span_processor(SimpleSpanProcessor(_RaisingExporter()))
    else:
        provider.add_span_processor(_BrokenProcessor())
    telemetry.instrument(provider, capture_content=True)
    try:
        result = await openai_model(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    finally:
        telemetry.instrument()
    assert result.text == recorded(PLAIN)["body"]["choices"][0]["message"]["content"]


async def test_a_slow_exporter_does_not_slow_the_call(replay: ReplayServer) -> None:
    exporter = _SlowExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10))
    telemetry.instrument(provider)
    try:
        llm = openai_model(replay, PLAIN, max_tokens=3)
        await llm.call_single("Please tell me a story")  # warm: the exporter is now busy for 2 s
        started = time.perf_counter()
        await llm.call_single("Please tell me a story")
        elapsed = time.perf_counter() - started
    finally:
        telemetry.instrument()
        provider.shutdown()
    assert elapsed < 1.5
    assert exporter.exported >= 2  # the spans did reach it, later


async def test_a_streamed_call_is_one_span_with_the_streams_usage(
    replay: ReplayServer, otel: Telemetry
) -> None:
    from tests.llms.helpers import sse_events

    events = sse_events(recorded("openai-chat-stream-29f559"))
    usage = next(event["usage"] for event in events if event.get("usage"))
    deltas: list[str] = []
    await openai_model(replay, "openai-chat-stream-29f559").call_single(
        "Say hello", callbacks=[deltas.append], temperature=1.0
    )

    attributes = dict(otel.one("chat ").attributes or {})
    assert attributes["gen_ai.response.id"] == events[0]["id"]
    # (gen_ai.response.model: litellm's stream chunks name the requested model, not the one that answered.)
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "".join(deltas)


GLOBAL_PROVIDER_SCRIPT = """
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from lmi import LiteLLMModel

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
llm = LiteLLMModel(name="gpt-4o-mini", config={"api_base": sys.argv[1], "max_tokens": 3})
asyncio.run(llm.call_single("Please tell me a story"))  # before the provider is set: nothing recorded
trace.set_tracer_provider(provider)
with trace.get_tracer("app").start_as_current_span("pipeline step"):
    asyncio.run(llm.call_single("Please tell me a story"))
print(json.dumps([[s.name, s.parent.span_id if s.parent else None, s.context.span_id]
                  for s in exporter.get_finished_spans()]))
"""


def test_the_global_provider_set_after_import_is_used_and_parents_our_span(replay: ReplayServer) -> None:
    import subprocess
    import sys

    from tests.cli.conftest import base_env

    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_SCRIPT, replay.openai_base(PLAIN)],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spans = {name: (parent, own) for name, parent, own in json.loads(result.stdout.splitlines()[-1])}
    assert set(spans) == {"attempt gpt-4o-mini", "chat gpt-4o-mini", "pipeline step"}
    assert spans["chat gpt-4o-mini"][0] == spans["pipeline step"][1]  # the caller's span is the parent
    assert spans["attempt gpt-4o-mini"][0] == spans["chat gpt-4o-mini"][1]


async def test_budget_waits_are_child_spans(replay: ReplayServer, otel: Telemetry) -> None:
    import asyncio

    from lmi import cost_tracking_ctx
    from lmi.cost.estimate import worst_case_chat_usd

    body = recorded(PLAIN)["body"]
    request = {
        "model": "gpt-4o-mini",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "Please tell me a story"}],
    }
    worst, real = worst_case_chat_usd("gpt-4o-mini", request), _openai_cost(body)
    budget = (real + 3 * worst) / 2  # one call's worst case fits, two do not; one settled plus one does
    replay.inject(PLAIN, Fault(delay=0.5, replay=True, times=1))  # the first call holds its reservation
    llm = openai_model(replay, PLAIN, max_tokens=3)
    with cost_tracking_ctx(budget_usd=budget):
        await asyncio.gather(
            llm.call_single("Please tell me a story"), llm.call_single("Please tell me a story")
        )

    spans = otel.finished()
    waits = []
    for chat in otel.finished("chat "):
        (attempt,) = _children(chat, spans)
        (wait,) = _children(attempt, spans)
        assert wait.name == "lmi.wait budget"
        assert wait.attributes["lmi.model"] == "gpt-4o-mini"
        waits.append((wait.end_time - wait.start_time) / 1e9)
    assert min(waits) < 0.3
    assert max(waits) >= 0.3  # the second call waited for the first to settle


async def test_a_batch_job_is_one_span_over_its_items(tmp_path: Any, otel: Telemetry) -> None:
    from lmi.batch import collect_batch
    from lmi.batch.store import BatchStore
    from tests.batch.conftest import OPENAI_RECORDINGS, price_map_entry
    from tests.batch.servers import BatchServer

    server = BatchServer(OPENAI_RECORDINGS).start()
    try:
        name = "gpt-4o-mini-2024-07-18"
        params = {"model": name, "api_base": server.openai_base}
        config = {"model_list": [{"model_name": name, "litellm_params": params}], "batch_poll_interval": 0.01}
        results = await LiteLLMModel(name=name, config=config).call_batch(
            ["Say hello", "What does 42 mean?"], batch_dir=str(tmp_path / "batches")
        )
        (job,) = BatchStore(tmp_path / "batches").jobs()
        cost_once = sum(point.value for point in otel.points("lmi.client.cost"))
        again = await collect_batch(job.job_id, batch_dir=str(tmp_path / "batches"))
    finally:
        server.stop()

    assert [r.text for r in again] == [r.text for r in results]  # type: ignore[union-attr]
    # collected twice, billed once: the second collection adds nothing to the cost counter
    assert sum(point.value for point in otel.points("lmi.client.cost")) == cost_once > 0
    span = otel.finished("batch ")[0]
    attributes = dict(span.attributes or {})
    assert span.name == f"batch {name}"
    assert attributes["gen_ai.operation.name"] == "batch"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert (
        attributes["lmi.batch.items"],
        attributes["lmi.batch.succeeded"],
        attributes["lmi.batch.failed"],
    ) == (
        2,
        2,
        0,
    )
    bodies = [
        json.loads(load_recording(r)[0]["response"]) for r in ("openai-chat-ea3a00", "openai-chat-887c4f")
    ]
    assert attributes["gen_ai.usage.input_tokens"] == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert attributes["gen_ai.usage.output_tokens"] == sum(b["usage"]["completion_tokens"] for b in bodies)
    entry = price_map_entry(name)
    expected = sum(
        b["usage"]["prompt_tokens"] * entry["input_cost_per_token_batches"]
        + b["usage"]["completion_tokens"] * entry["output_cost_per_token_batches"]
        for b in bodies
    )
    assert attributes["lmi.cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert len(results) == 2
