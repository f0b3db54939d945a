"""The litellm transport: every provider litellm reaches, and the reference the native one matches.

The limiter's charge (``before_send``) is taken right before litellm writes the request, for the providers
whose client it lets us pass, else right before litellm is called (see
:mod:`lmi.llms.transports.litellm_clients`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmi._lazy import litellm
from lmi.llms.config import DEFAULT_MAX_CONNECTIONS, requested_n
from lmi.llms.results import Completion, StreamAssembler, completion_from_response
from lmi.llms.retry import off_the_attempt_clock
from lmi.llms.transports.litellm_clients import send_charged
from lmi.llms.transports.wire import BeforeSend

if TYPE_CHECKING:
    from lmi.llms.config import Deployment


class LiteLLMTransport:
    """``litellm.acompletion`` with the request as given; where lmi hands litellm its client, that client
    sends on the loop's pool of ``max_connections``."""

    __slots__ = ("max_connections",)

    def __init__(self, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        return request

    async def complete(
        self, deployment: Deployment, prepared: dict[str, Any], before_send: BeforeSend | None = None
    ) -> Completion:
        module = _imported()
        if requested_n(prepared.get("n")) == 1:
            return completion_from_response(
                await send_charged(
                    module.acompletion, prepared, "completion", before_send, self.max_connections
                )
            )
        # litellm renumbers choices 0, 1, ... in the order they arrived, losing the provider's index;
        # its per-request logger_fn sees the provider's own body, which still has it.
        raw = _RawResponse()
        request = {**prepared, "logger_fn": raw}
        response = await send_charged(
            module.acompletion, request, "completion", before_send, self.max_connections
        )
        return completion_from_response(response, indices=raw.choice_indices(len(response.choices)))

    async def stream(
        self,
        deployment: Deployment,
        prepared: dict[str, Any],
        on_text: Callable[[str], Awaitable[None]],
        before_send: BeforeSend | None = None,
    ) -> Completion:
        module = _imported()
        stream = await send_charged(
            module.acompletion, prepared, "completion", before_send, self.max_connections
        )
        assembler = StreamAssembler()
        try:
            async for chunk in stream:
                delta = assembler.add(chunk)
                if delta:
                    await on_text(delta)
        finally:
            # Release the connection however the stream ended: finished, failed or cancelled.
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):  # closing must never mask the stream's outcome
                    await close()
        completion = assembler.finish()
        if not _provider_sent_usage(stream):
            completion.usage = None  # litellm's own count, not the provider's bill: estimate and flag it
        return completion


def _imported() -> ModuleType:
    """litellm, imported (seconds, the first time) off the attempt's clock: it is not the provider's time."""
    if litellm.cache_info().currsize:
        return litellm()
    with off_the_attempt_clock():
        return litellm()


class _RawResponse:
    """A litellm ``logger_fn`` that keeps the provider's response body as litellm received it."""

    __slots__ = ("body",)

    def __init__(self) -> None:
        self.body: Any = None

    def __call__(self, details: dict[str, Any]) -> None:
        if details.get("log_event_type") == "post_api_call":
            self.body = details.get("original_response")

    def choice_indices(self, count: int) -> list[int] | None:
        """The provider's index of each of the ``count`` choices, in the order sent; None if unknown."""
        try:
            body = json.loads(self.body) if isinstance(self.body, str | bytes) else self.body
            indices = [choice["index"] for choice in body["choices"]]
        except (TypeError, ValueError, KeyError):
            return None
        if len(indices) != count or not all(isinstance(i, int) for i in indices):
            return None
        return indices


def _provider_sent_usage(stream: Any) -> bool:
    """Whether any chunk the provider streamed carried usage.

    litellm ends every stream that asked for usage with a usage chunk, made from its own token count
    when the provider sent none; the chunks it kept (``chunks``) tell the two apart.
    """
    chunks = getattr(stream, "chunks", None)
    if not isinstance(chunks, list):
        return True  # cannot tell: trust the usage litellm gave
    return any(_get_usage(chunk) is not None for chunk in chunks)


def _get_usage(chunk: Any) -> Any:
    return chunk.get("usage") if isinstance(chunk, dict) else getattr(chunk, "usage", None)


LITELLM = LiteLLMTransport()
