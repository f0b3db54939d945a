"""OpenTelemetry spans and metrics for every model call, following the GenAI semantic conventions.

Nothing happens unless ``opentelemetry-api`` is installed (the ``otel`` extra) and a tracer or meter
provider is configured, globally (``opentelemetry.trace.set_tracer_provider``) or for lmi alone with
:func:`instrument`. Then each chat call is a ``chat {model}`` span (each embeddings request an
``embeddings {model}`` span) carrying the request and response models, token counts, finish reasons, the
response id, ``lmi.cost_usd`` and ``lmi.cache_hit``; each provider attempt, rate-limit acquisition and
retry backoff is a child span; and the ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` histograms and the ``lmi.client.cost`` counter are recorded.

Prompt and completion text are recorded only when asked for: ``instrument(capture_content=True)`` or the
convention's env ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.

Telemetry never fails a call: an exception raised while recording (a broken span processor, say) is
logged once and swallowed. Exporting is the SDK's span processors' business; a slow exporter belongs
behind a ``BatchSpanProcessor``, which exports off the caller's path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from lmi._genai import provider_name, request_attributes, response_attributes

if TYPE_CHECKING:
    from lmi.types import LLMResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
INSTRUMENTATION_NAME = "lmi"
# The conventions' advised buckets: token counts by powers of 4, durations from 10 ms to ~1.5 min.
_TOKEN_BUCKETS = [4**power for power in range(1, 14)]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


class _Instruments:
    """What recording needs, built once per (tracer provider, meter provider) pair."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, otel_trace: Any) -> None:
        self.trace = otel_trace
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME) if tracer_provider else None
        self.token_usage: Any = None
        self.duration: Any = None
        self.cost: Any = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(INSTRUMENTATION_NAME)
            self.token_usage = _histogram(
                meter, "gen_ai.client.token.usage", "{token}", "Tokens used per call", _TOKEN_BUCKETS
            )
            self.duration = _histogram(
                meter, "gen_ai.client.operation.duration", "s", "Duration of calls", _DURATION_BUCKETS
            )
            self.cost = meter.create_counter("lmi.client.cost", unit="USD", description="Spend on calls")


def _histogram(meter: Any, name: str, unit: str, description: str, buckets: list[Any]) -> Any:
    try:
        return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=buckets)
    except TypeError:  # opentelemetry-api before 1.23 takes no advice on buckets
        return meter.create_histogram(name, unit, description)


class _Settings:
    """Providers given to :func:`instrument`, and what was built for the providers last seen."""

    def __init__(self) -> None:
        self.tracer_provider: Any = None
        self.meter_provider: Any = None
        self.capture_content: bool | None = None
        self.otel: tuple[Any, Any] | None = None  # (trace, metrics) modules; () when not installed
        self.missing = False
        self.key: tuple[Any, Any] | None = None
        self.instruments: _Instruments | None = None
        self.failing = False


_SETTINGS = _Settings()


def instrument(
    tracer_provider: Any = None, meter_provider: Any = None, capture_content: bool | None = None
) -> None:
    """Send lmi's spans and metrics to these providers instead of the global ones (None: the global).

    ``capture_content`` records prompts and completions on the spans (None: follow the env
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``). Without opentelemetry installed, does nothing.
    """
    _SETTINGS.tracer_provider, _SETTINGS.meter_provider = tracer_provider, meter_provider
    _SETTINGS.capture_content = capture_content
    _SETTINGS.key = None


def active() -> _Instruments | None:
    """The instruments to record with, or None when nothing would receive a span or a metric.

    Runs on every call: without opentelemetry it is one attribute test, with it two provider look-ups.
    """
    settings = _SETTINGS
    if settings.missing:
        return None
    if settings.otel is None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            settings.missing = True
            return None
        settings.otel = (trace, metrics)
    trace, metrics = settings.otel
    tracer_provider = settings.tracer_provider or trace.get_tracer_provider()
    meter_provider = settings.meter_provider or metrics.get_meter_provider()
    key = (tracer_provider, meter_provider)
    if key != settings.key:
        settings.key = key
        tracing = _configured(tracer_provider)
        metering = _configured(meter_provider)
        settings.instruments = (
            _Instruments(tracer_provider if tracing else None, meter_provider if metering else None, trace)
            if tracing or metering
            else None
        )
    return settings.instruments


def _configured(provider: Any) -> bool:
    """Whether ``provider`` is a real SDK (or vendor) provider, not the API's stand-in or no-op."""
    return type(provider).__name__ not in {
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    }


def capture_content() -> bool:
    if _SETTINGS.capture_content is not None:
        return _SETTINGS.capture_content
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _guarded(what: str, action: Callable[[], T]) -> T | None:
    """Run a recording step; a failure is logged (once per run of failures) and never reaches the call."""
    try:
        result = action()
    except Exception:
        if not _SETTINGS.failing:
            logger.exception("OpenTelemetry recording failed (%s); the call goes on", what)
        _SETTINGS.failing = True
        return None
    _SETTINGS.failing = False
    return result


class Operation:
    """One GenAI operation (a chat call, an embeddings request): its span, its metrics, its ledger ids."""

    __slots__ = ("attributes", "instruments", "response_model", "span", "started")

    def __init__(self, instruments: _Instruments, operation: str, model: str, provider: str) -> None:
        self.instruments = instruments
        self.attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,  # the name before semantic conventions 1.37, still widely read
            "gen_ai.request.model": model,
        }
        self.response_model: str | None = None
        self.span: Any = None
        self.started = time.perf_counter()
        tracer = instruments.tracer
        if tracer is not None:
            kind = instruments.trace.SpanKind.CLIENT
            self.span = _guarded(
                "span start",
                lambda: tracer.start_span(f"{operation} {model}", kind=kind, attributes=self.attributes),
            )

    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex, as OpenTelemetry exporters print them; None without a span."""
        context = self.span.get_span_context() if self.span is not None else None
        if context is None or not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def set(self, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            _guarded("attributes", lambda: self.span.set_attributes(attributes))

    def finish(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float = 0.0,
        error: BaseException | None = None,
    ) -> None:
        duration = time.perf_counter() - self.started
        metric_attributes = {key: self.attributes[key] for key in _METRIC_KEYS}
        if self.response_model:
            metric_attributes["gen_ai.response.model"] = self.response_model
        if error is not None:
            metric_attributes["error.type"] = type(error).__qualname__
        _guarded(
            "metrics", lambda: self._metrics(metric_attributes, duration, input_tokens, output_tokens, cost)
        )
        if self.span is not None:
            _guarded("span end", lambda: self._end_span(error))

    def _metrics(
        self,
        attributes: dict[str, Any],
        duration: float,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float,
    ) -> None:
        instruments = self.instruments
        if instruments.duration is None:
            return
        instruments.duration.record(duration, attributes)
        if input_tokens is not None:
            instruments.token_usage.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            instruments.token_usage.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if cost:
            instruments.cost.add(cost, attributes)

    def _end_span(self, error: BaseException | None) -> None:
        if error is not None:
            _mark_error(self.instruments, self.span, error)
        self.span.end()


_METRIC_KEYS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
_current: ContextVar[Operation | None] = ContextVar("lmi_telemetry_operation", default=None)


def call_ids() -> tuple[str, str] | None:
    """The trace and span ids of the lmi operation running in this context (for the cost ledger)."""
    operation = _current.get()
    return operation.ids() if operation is not None else None


def note_response_model(model: str | None) -> None:
    """The model the provider says answered (``gen_ai.response.model``), from inside an attempt."""
    operation = _current.get()
    if operation is not None and model:
        operation.response_model = model


@contextlib.contextmanager
def operation(instruments: _Instruments, kind: str, model: str, provider: str) -> Iterator[Operation]:
    """Run the block as the current ``kind`` operation: its span is the parent of spans started inside."""
    op = Operation(instruments, kind, model, provider)
    token = _current.set(op)
    try:
        with _current_span(instruments, op.span):
            yield op
    finally:
        _current.reset(token)


def _current_span(instruments: _Instruments, span: Any) -> contextlib.AbstractContextManager[Any]:
    if span is None:
        return _NO_SPAN
    use_span = instruments.trace.use_span
    return use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


@contextlib.contextmanager
def _child_span(instruments: _Instruments, name: str, attributes: dict[str, Any]) -> Iterator[None]:
    """A span around the block, guarded like the others: recording never breaks what it records."""
    tracer = instruments.tracer
    span = _guarded("span start", lambda: tracer.start_span(name, attributes=attributes)) if tracer else None
    if span is None:
        yield
        return
    try:
        with _current_span(instruments, span):
            yield
    except BaseException as exc:
        _guarded("span error", partial(_mark_error, instruments, span, exc))
        raise
    finally:
        _guarded("span end", span.end)


def _mark_error(instruments: _Instruments, span: Any, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__qualname__)
    span.record_exception(error)
    span.set_status(instruments.trace.Status(instruments.trace.StatusCode.ERROR, str(error)))


async def traced_chat(
    instruments: _Instruments,
    model: str,
    provider: str,
    params: Mapping[str, Any],
    run: Callable[[], Awaitable[list[LLMResult]]],
) -> list[LLMResult]:
    """Run one chat call (``run``) inside its ``chat {model}`` span and record its metrics."""
    with operation(instruments, "chat", model, provider) as op:
        op.set(request_attributes(params))
        try:
            results = await run()
        except BaseException as exc:
            op.finish(error=exc)
            raise
        usage = [result.usage for result in results]
        input_tokens = sum(u.prompt_tokens for u in usage)
        output_tokens = sum(u.completion_tokens for u in usage)
        cost = sum(result.cost for result in results)
        op.set(
            response_attributes(
                results, input_tokens, output_tokens, cost, op.response_model, capture_content()
            )
        )
        op.finish(input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)
        return results


def traced_operation(
    kind: str, model: str, provider: str | None = None
) -> contextlib.AbstractContextManager[Operation | None]:
    """``with traced_operation("embeddings", model) as op:`` around one operation; ``op`` is None when off.

    ``provider`` is litellm's provider name when known (else found from ``model``). The caller ends the
    operation with ``op.finish(...)``.
    """
    instruments = active()
    if instruments is None:
        return contextlib.nullcontext()
    return operation(instruments, kind, model, provider_name(model, provider))


def traced_attempts(attempt: Callable[[Any], Awaitable[T]]) -> Callable[[Any], Awaitable[T]]:
    """``attempt`` with a child span per run (``attempt {deployment}``): which try failed, which answered.

    Returned unchanged when no span would be recorded.
    """
    instruments = active()
    if instruments is None or instruments.tracer is None:
        return attempt
    counts: dict[str, int] = {}

    async def traced(deployment: Any) -> T:
        name = getattr(deployment, "name", str(deployment))
        counts[name] = number = counts.get(name, 0) + 1
        attributes = {"gen_ai.request.model": name, "lmi.attempt": number}
        with _child_span(instruments, f"attempt {name}", attributes):
            return await attempt(deployment)

    return traced


_NO_SPAN = contextlib.nullcontext()


def waiting(kind: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span ``lmi.wait {kind}`` (``rate_limit``, ``budget``, ``retry_backoff``) around a wait.

    Attribute names get the prefix ``lmi.``; a no-op context when no span would be recorded.
    """
    instruments = active()
    if instruments is None or instruments.tracer is None:
        return _NO_SPAN
    prefixed: dict[str, Any] = {"lmi.wait": kind}
    for key, value in attributes.items():
        if value is not None:
            prefixed[f"lmi.{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return _child_span(instruments, f"lmi.wait {kind}", prefixed)


__all__ = ["CAPTURE_CONTENT_ENV", "call_ids", "instrument"]
