"""The litellm transport: every provider litellm reaches, and the reference the native one matches."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmi._lazy import litellm
from lmi.llms.config import requested_n
from lmi.llms.results import Completion, StreamAssembler, completion_from_response
from lmi.llms.retry import off_the_attempt_clock
from lmi.llms.transports.wire import BeforeSend, Charge

if TYPE_CHECKING:
    from lmi.llms.config import Deployment


class LiteLLMTransport:
    """``litellm.acompletion`` with the request as given."""

    __slots__ = ()

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        return request

    async def complete(
        self, deployment: Deployment, prepared: dict[str, Any], before_send: BeforeSend | None = None
    ) -> Completion:
        module = _imported()
        charge = None if before_send is None else await before_send()
        if requested_n(prepared.get("n")) == 1:
            return completion_from_response(await send_or_refund(module.acompletion(**prepared), charge))
        # litellm renumbers choices 0, 1, ... in the order they arrived, losing the provider's index;
        # its per-request logger_fn sees the provider's own body, which still has it.
        raw = _RawResponse()
        response = await send_or_refund(module.acompletion(**prepared, logger_fn=raw), charge)
        return completion_from_response(response, indices=raw.choice_indices(len(response.choices)))

    async def stream(
        self,
        deployment: Deployment,
        prepared: dict[str, Any],
        on_text: Callable[[str], Awaitable[None]],
        before_send: BeforeSend | None = None,
    ) -> Completion:
        module = _imported()
        charge = None if before_send is None else await before_send()
        stream = await send_or_refund(module.acompletion(**prepared), charge)
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


async def send_or_refund(request: Awaitable[Any], charge: Charge | None) -> Any:
    """``await request``; if it failed before reaching the server, hand ``charge`` back."""
    try:
        return await request
    except Exception as exc:
        if charge is not None and _never_connected(exc):
            await charge.cancel()
        raise


def _never_connected(exc: BaseException) -> bool:
    """Whether litellm failed to connect at all (refused, unresolvable, TLS, connect timeout): its
    exception keeps the HTTP client's own one in its chain of causes."""
    import aiohttp
    import httpx

    failures = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        aiohttp.ClientConnectorError,
        aiohttp.ConnectionTimeoutError,
    )
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, failures):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


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
