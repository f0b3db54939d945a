"""What every wire format shares: where a request goes, which of its keys are the transport's, SSE."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Charge(Protocol):
    """What a request was charged in our rate limits, as the transport's ``before_send`` returns it."""

    async def count_from_now(self) -> None:
        """The request leaves later than its grant (its connection took a while): count it from now."""

    async def cancel(self) -> None:
        """The request never reached the server: hand everything back."""


# A request written within this many seconds of the limiter's grant is written at once; one written later
# has its charge counted again from then (well within the limiter's REQUEST_LATENCY).
RECOUNT_AFTER = 0.005

# Awaited by a transport once the request is ready, right before it is written (the limiter's charge).
BeforeSend = Callable[[], Awaitable[Charge | None]]

# litellm request keys that configure the transport rather than the body.
TRANSPORT_KEYS = frozenset(
    {
        "api_base", "base_url", "api_key", "timeout", "max_retries", "extra_headers", "headers",
        "organization", "custom_llm_provider", "extra_body",
    }
)  # fmt: skip


class Unsupported(Exception):
    """The native codec cannot send this request as litellm would; ``transport="auto"`` uses litellm."""


class ErrorBody(ValueError):
    """A successful status whose body is an error object, not a completion."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    headers: dict[str, str]
    provider: str  # "openai" | "anthropic": names the provider in errors, picks litellm's error classes


def split_request(
    request: dict[str, Any], body_keys: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a litellm-shaped request into the JSON body and the transport's settings.

    ``None`` values are left out, as litellm leaves them out. A key that is neither raises
    :class:`Unsupported` naming it.
    """
    body: dict[str, Any] = {}
    transport: dict[str, Any] = {}
    for key, value in request.items():
        if value is None:
            continue
        if key in body_keys:
            body[key] = value
        elif key in TRANSPORT_KEYS:
            if isinstance(value, str) and value.startswith("os.environ/"):  # litellm's router syntax
                value = os.environ.get(value.removeprefix("os.environ/"))
            transport[key] = value
        else:
            raise Unsupported(f"parameter {key!r}")
    extra = transport.get("extra_body")
    if extra:
        body.update(extra)
    return body, transport


def timeout_seconds(request: dict[str, Any], default: float) -> float:
    value = request.get("timeout")
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Unsupported(f"timeout {value!r} (only a number of seconds is native)")


class StreamCut(ValueError):
    """The event stream ended in the middle of an event."""


async def sse_events(lines: AsyncIterable[bytes]) -> AsyncGenerator[tuple[str | None, bytes], None]:
    """(event name, data) for each server-sent event; raises :class:`StreamCut` on a partial last one."""
    event: str | None = None
    data: list[bytes] = []
    pending = False
    async for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield event, b"\n".join(data)
            event, data, pending = None, [], False
            continue
        pending = True
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        # comments (":") and other fields (id, retry) carry nothing a completion needs
        if not raw.endswith(b"\n"):  # only the last line can lack its newline: the stream ended there
            if data == [b"[DONE]"]:  # a final marker without its line ending is still the end
                yield event, data[0]
                return
            raise StreamCut("the stream ended in the middle of a line")
    if pending:
        if data == [b"[DONE]"]:  # a final marker without its blank line is still the end
            yield event, data[0]
            return
        raise StreamCut("the stream ended in the middle of an event")
