"""The native transport: a wire-format codec plus the loop's pooled aiohttp session.

Everything between the limiter's grant and the bytes on the socket is here: encode the body once,
``POST`` it, turn the status and body (or the event stream) into a :class:`Completion` or into the
exception litellm would raise. Codecs (``openai``, ``anthropic``) never touch the network.

The limiter's charge (``before_send``) is taken once the body is encoded. When the write then comes
later (a new connection to open, a wait for a free one in the pool, a busy loop) the charge is counted
again right before the first byte goes out, so the limits hold at the provider's end whatever the way
there cost; when the request never reached the server (refused, unresolvable, a connect timeout,
cancelled before the write) the charge is handed back.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmi.llms.results import Completion
from lmi.llms.transports import errors
from lmi.llms.transports.session import session_for
from lmi.llms.transports.wire import (
    RECOUNT_AFTER,
    BeforeSend,
    Charge,
    Endpoint,
    ErrorBody,
    StreamCut,
    sse_events,
    timeout_seconds,
)

if TYPE_CHECKING:
    import aiohttp
    import aiohttp.payload
    from aiohttp.abc import AbstractStreamWriter

    from lmi.llms.config import Deployment

DEFAULT_TIMEOUT = 600.0  # seconds, litellm's default
_CONNECT_TIMEOUT = 30.0
_JSON = ("application/json", "application/problem+json")


@functools.cache
def charged_body() -> type[aiohttp.payload.BytesPayload]:
    import aiohttp.payload

    class ChargedBody(aiohttp.payload.BytesPayload):
        """A request body that awaits ``before_write`` right before the request's first byte goes out.

        aiohttp writes the body, with the headers coalesced into its first write, once the connection
        is ready (after opening it, or waiting for a free one) and, before Python 3.12, in a task of its
        own that runs only after every callback already queued on the loop: the last moment before the
        bytes leave, however long the way there took.
        """

        def __init__(self, data: bytes, before_write: Callable[[], Awaitable[None]]) -> None:
            super().__init__(data)
            self._before_write: Callable[[], Awaitable[None]] | None = before_write

        async def _ready(self) -> None:
            before_write, self._before_write = self._before_write, None
            if before_write is not None:
                await before_write()

        async def write(self, writer: AbstractStreamWriter) -> None:  # aiohttp < 3.12
            await self._ready()
            await super().write(writer)

        async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
            await self._ready()
            await super().write_with_length(writer, content_length)

    return ChargedBody


def _client_errors() -> tuple[type[BaseException], ...]:
    import aiohttp

    return (aiohttp.ClientError, OSError)


class NativeTransport:
    """Sends one wire format (``codec``) natively; see :mod:`lmi.llms.transports`."""

    __slots__ = ("codec", "max_connections")

    def __init__(self, codec: ModuleType, max_connections: int) -> None:
        self.codec = codec
        self.max_connections = max_connections

    def prepare(self, request: dict[str, Any]) -> tuple[Endpoint, dict[str, Any], float]:
        """Endpoint, body and timeout; raises :class:`Unsupported` before anything is sent."""
        endpoint, body = self.codec.chat_request(request)
        return endpoint, body, timeout_seconds(request, DEFAULT_TIMEOUT)

    async def complete(
        self,
        deployment: Deployment,
        prepared: tuple[Endpoint, dict[str, Any], float],
        before_send: BeforeSend | None = None,
    ) -> Completion:
        """One request; ``before_send`` (the limiter's charge) is awaited right before the write."""
        endpoint, body, timeout = prepared
        exchange = _Exchange(self, deployment, endpoint, body, timeout, stream=False, before_send=before_send)
        async with exchange:
            return exchange.parse(await exchange.read_json(), self.codec.completion)

    async def embed(
        self, deployment: Deployment, request: dict[str, Any], before_send: BeforeSend | None = None
    ) -> tuple[list[Any], int | None]:
        """The response's embedding items (``index`` and ``embedding``), and the billed prompt tokens."""
        endpoint, body = self.codec.embedding_request(request)
        timeout = timeout_seconds(request, DEFAULT_TIMEOUT)
        exchange = _Exchange(self, deployment, endpoint, body, timeout, stream=False, before_send=before_send)
        async with exchange:
            result: tuple[list[Any], int | None]
            result = exchange.parse(await exchange.read_json(), self.codec.embeddings)
            return result

    async def stream(
        self,
        deployment: Deployment,
        prepared: tuple[Endpoint, dict[str, Any], float],
        on_text: Callable[[str], Awaitable[None]],
        before_send: BeforeSend | None = None,
    ) -> Completion:
        endpoint, body, timeout = prepared
        exchange = _Exchange(self, deployment, endpoint, body, timeout, stream=True, before_send=before_send)
        async with exchange:
            return await exchange.read_stream(on_text)


class _Exchange:
    """One request and its response; every failure leaves as the matching litellm exception."""

    __slots__ = (
        "before_send",
        "body",
        "charge",
        "deployment",
        "endpoint",
        "granted",
        "refused",
        "response",
        "sending",
        "stream",
        "timeout",
        "transport",
    )

    def __init__(
        self,
        transport: NativeTransport,
        deployment: Deployment,
        endpoint: Endpoint,
        body: dict[str, Any],
        timeout: float,
        *,
        stream: bool,
        before_send: BeforeSend | None = None,
    ) -> None:
        self.before_send = before_send
        self.transport = transport
        self.deployment = deployment
        self.endpoint = endpoint
        self.body = body
        self.timeout = timeout
        self.stream = stream
        self.response: aiohttp.ClientResponse | None = None
        self.charge: Charge | None = None
        self.granted = 0.0  # time.monotonic() of the limiter's grant
        self.sending = False  # past the last step before the write: the request may reach the server
        self.refused: BaseException | None = None  # the limiter failed to count the request again

    def _context(self) -> dict[str, Any]:
        return {
            "provider": self.endpoint.provider,
            "deployment": self.deployment.name,
            "model": str(self.body.get("model", self.deployment.model)),
            "url": self.endpoint.url,
        }

    async def __aenter__(self) -> _Exchange:
        import aiohttp

        session = await session_for(self.transport.max_connections)
        if self.stream:  # a stream may run long: bound the silence between events, not the whole
            timeout = aiohttp.ClientTimeout(
                total=None, connect=min(self.timeout, _CONNECT_TIMEOUT), sock_read=self.timeout
            )
        else:
            timeout = aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, _CONNECT_TIMEOUT))
        data = json.dumps(self.body).encode()
        if self.before_send is not None:
            self.charge = await self.before_send()
            self.granted = time.monotonic()
        try:
            self.response = await session.post(
                self.endpoint.url,
                data=data if self.charge is None else charged_body()(data, self._before_write),
                headers=self.endpoint.headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except BaseException as exc:
            if self.charge is not None and not self.sending:
                await self.charge.cancel()  # refused, unresolvable, timed out or cancelled: never sent
            if self.refused is not None:  # the limiter's own failure, surfacing through aiohttp
                raise self.refused from None
            if isinstance(exc, Exception):
                raise self._translate(exc) from exc
            raise
        self.sending = True
        status = self.response.status
        if status >= 300:
            try:
                text = await self._text()
            except Exception as exc:
                raise self._translate(exc) from exc
            finally:
                self.response.release()
            headers = self.response.headers
            if status < 400:
                location = headers.get("location", "(no location)")
                text = f"redirected to {location}; not followed (check api_base). {text}"
            raise errors.status_error(status=status, headers=headers, body=text, **self._context())
        return self

    async def _before_write(self) -> None:
        """Awaited right before the request's first byte is written (its connection is ready)."""
        assert self.charge is not None
        if time.monotonic() - self.granted > RECOUNT_AFTER:
            try:
                await self.charge.count_from_now()
            except BaseException as exc:
                self.refused = exc
                raise
        self.sending = True

    async def __aexit__(self, *exc_info: object) -> None:
        if self.response is not None:
            # A finished body returns its connection to the pool; a stream abandoned midway (error,
            # cancellation) must not be reused half-read, so it is closed instead.
            if exc_info[0] is None:
                self.response.release()
            else:
                self.response.close()

    def _translate(self, exc: Exception) -> Exception:
        """A timeout or connection failure as litellm's exception; anything else (a bug) as itself."""
        if isinstance(exc, TimeoutError):
            return errors.timeout_error(seconds=self.timeout, **self._context())
        if isinstance(exc, _client_errors()):
            return errors.connection_error(cause=exc, **self._context())
        raise exc

    async def _text(self) -> str:
        assert self.response is not None
        return (await self.response.read()).decode("utf-8", errors="replace")

    def _malformed(self, text: str, why: str) -> Exception:
        assert self.response is not None
        return errors.malformed(
            status=self.response.status, headers=self.response.headers, body=text, why=why, **self._context()
        )

    async def read_json(self) -> Any:
        assert self.response is not None
        try:
            raw = await self.response.read()
        except Exception as exc:
            raise self._translate(exc) from exc
        text = raw.decode("utf-8", errors="replace")
        content_type = self.response.content_type
        try:
            data = json.loads(raw)
        except ValueError as exc:
            why = "the body is not JSON" if content_type in _JSON else f"content type {content_type!r}"
            raise self._malformed(text, f"{why} ({exc})") from None
        if content_type not in _JSON:
            raise self._malformed(text, f"content type {content_type!r}, not JSON")
        return data

    def parse(self, data: Any, parser: Callable[[Any], Any]) -> Any:
        """``parser(data)``, with an error object or a malformed body raised as litellm raises them."""
        assert self.response is not None
        try:
            return parser(data)
        except ErrorBody:
            text = json.dumps(data)
            raise errors.error_in_body(
                status=self.response.status, headers=self.response.headers, body=text, **self._context()
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._malformed(json.dumps(data)[:1000], f"not the expected answer ({exc})") from None

    async def read_stream(self, on_text: Callable[[str], Awaitable[None]]) -> Completion:
        assert self.response is not None
        if self.response.content_type != "text/event-stream":
            data = await self.read_json()  # an error object, or a server that ignored "stream"
            completion: Completion = self.parse(data, self.transport.codec.completion)
            if completion.choices and completion.choices[0].text:  # the callbacks still get the text
                await on_text(completion.choices[0].text)
            return completion
        state = self.transport.codec.ChatStream()
        events = sse_events(self.response.content)
        try:
            await self._read_events(events, state, on_text)
        finally:
            await events.aclose()
        try:
            return state.finish()
        except ValueError as exc:
            raise errors.connection_error(cause=exc, **self._context()) from None

    async def _read_events(
        self,
        events: AsyncGenerator[tuple[str | None, bytes], None],
        state: Any,
        on_text: Callable[[str], Awaitable[None]],
    ) -> None:
        assert self.response is not None
        while True:
            # Only reading the stream is guarded: a callback's own failure must surface as itself.
            try:
                event, data = await anext(events)
            except StopAsyncIteration:
                break
            except StreamCut as exc:
                raise errors.connection_error(cause=exc, **self._context()) from None
            except Exception as exc:
                raise self._translate(exc) from exc
            if data == b"[DONE]":
                break
            try:
                parsed = json.loads(data)
            except ValueError:
                raise self._malformed(data.decode(errors="replace"), "a stream event is not JSON") from None
            try:
                delta = state.add(event, parsed)
            except ErrorBody:
                raise errors.error_in_body(
                    status=self.response.status,
                    headers=self.response.headers,
                    body=data.decode(errors="replace"),
                    **self._context(),
                ) from None
            if delta:
                await on_text(delta)
