"""The litellm transport: every provider litellm reaches, and the reference the native one matches."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lmi._lazy import litellm
from lmi.llms.results import Completion, StreamAssembler, completion_from_response
from lmi.llms.transports.wire import BeforeSend

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
        if before_send is not None:
            await before_send()
        return completion_from_response(await litellm().acompletion(**prepared))

    async def stream(
        self,
        deployment: Deployment,
        prepared: dict[str, Any],
        on_text: Callable[[str], Awaitable[None]],
        before_send: BeforeSend | None = None,
    ) -> Completion:
        if before_send is not None:
            await before_send()
        stream = await litellm().acompletion(**prepared)
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
