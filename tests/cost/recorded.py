"""Billed usage of every recorded exchange, read straight from the provider's raw response.

This is the tests' own mapping from each provider's wire format to ``TokenUsage``, written from the
providers' documentation and independent of the library's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi.types import TokenUsage

RECORDINGS = Path(__file__).parent.parent / "recordings"


@dataclass(frozen=True)
class RecordedCall:
    recording: str
    index: int
    path: str
    request_model: str
    response_model: str | None
    usage: TokenUsage

    @property
    def id(self) -> str:
        return f"{self.recording}#{self.index}"


def _sse_events(body: str) -> list[dict[str, Any]]:
    events = []
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[len("data:") :].strip()
            if data and data != "[DONE]":
                events.append(json.loads(data))
    return events


def _openai_usage(usage: dict[str, Any]) -> TokenUsage:
    """Chat completions, legacy completions and embeddings: ``prompt_tokens`` includes cached reads."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage.get("completion_tokens", 0),
        cache_read_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _responses_usage(usage: dict[str, Any]) -> TokenUsage:
    """Responses API: ``input_tokens`` includes cached reads, ``output_tokens`` includes reasoning."""
    return TokenUsage(
        prompt_tokens=usage["input_tokens"],
        completion_tokens=usage["output_tokens"],
        cache_read_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def _anthropic_usage(usage: dict[str, Any]) -> TokenUsage:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; ``output_tokens`` includes thinking."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_creation = usage.get("cache_creation_input_tokens") or 0
    return TokenUsage(
        prompt_tokens=usage["input_tokens"] + cache_read + cache_creation,
        completion_tokens=usage["output_tokens"],
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
    )


def _anthropic_stream_usage(events: list[dict[str, Any]]) -> dict[str, Any]:
    """``message_start`` carries the input counts; each ``message_delta`` carries cumulative counts."""
    usage: dict[str, Any] = {}
    for event in events:
        if event.get("type") == "message_start":
            usage.update(event["message"]["usage"])
        elif event.get("type") == "message_delta" and event.get("usage"):
            usage.update({k: v for k, v in event["usage"].items() if v is not None})
    return usage


def _usage_and_model(path: str, content_type: str, body: str) -> tuple[TokenUsage | None, str | None]:
    streamed = content_type.startswith("text/event-stream")
    if path.endswith("/messages"):
        if streamed:
            events = _sse_events(body)
            start = next(e for e in events if e.get("type") == "message_start")
            return _anthropic_usage(_anthropic_stream_usage(events)), start["message"]["model"]
        response = json.loads(body)
        return _anthropic_usage(response["usage"]), response.get("model")
    if path.endswith("/responses"):
        response = json.loads(body)
        return _responses_usage(response["usage"]), response.get("model")
    if streamed:  # OpenAI streams report usage once, in the last chunk, when asked to
        chunks = [c for c in _sse_events(body) if c.get("usage")]
        if not chunks:
            return None, None
        return _openai_usage(chunks[-1]["usage"]), chunks[-1].get("model")
    response = json.loads(body)
    if not response.get("usage"):
        return None, None
    return _openai_usage(response["usage"]), response.get("model")


def recorded_calls() -> list[RecordedCall]:
    """Every successful recorded exchange, with the usage its provider billed."""
    calls = []
    for file in sorted(RECORDINGS.glob("*.json")):
        for index, exchange in enumerate(json.loads(file.read_text())["exchanges"]):
            if exchange["status"] != 200:
                continue
            usage, response_model = _usage_and_model(
                exchange["path"], exchange["content_type"], exchange["response"]
            )
            if usage is None:
                raise AssertionError(f"{file.stem}#{index}: a successful exchange without usage")
            calls.append(
                RecordedCall(
                    recording=file.stem,
                    index=index,
                    path=exchange["path"],
                    request_model=exchange["request"]["model"],
                    response_model=response_model,
                    usage=usage,
                )
            )
    return calls
