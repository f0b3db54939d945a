"""The native transport: a wire-format codec plus the loop's pooled aiohttp session.

Everything between the limiter's grant and the bytes on the socket is here: encode the body once,
``POST`` it, turn the status and body (or the event stream) into a :class:`Completion` or into the
exception litellm would raise. Codecs (``openai``, ``anthropic``) never touch the network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmi.llms.results import Completion
from lmi.llms.transports import errors
from lmi.llms.transports.session import session_for
from lmi.llms.transports.wire import BeforeSend, Endpoint, ErrorBody, StreamCut, sse_events, timeout_seconds

if TYPE_CHECKING:
    import aiohttp

    from lmi.llms.config import Deployment

DEFAULT_TIMEOUT = 600.0  # seconds, litellm's default
_CONNECT_TIMEOUT = 30.0
_JSON = ("application/json", "application/problem+json")


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

    async def embed(self, deployment: Deployment, request: dict[str, Any]) -> tuple[list[Any], int | None]:
        """The response's embedding items (``index`` and ``embedding``), and the billed prompt tokens."""
        endpoint, body = self.codec.embedding_request(request)
        timeout = timeout_seconds(request, DEFAULT_TIMEOUT)
        async with _Exchange(self, deployment, endpoint, body, timeout, stream=False) as exchange:
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
        "deployment",
        "endpoint",
        "response",
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
            await self.before_send()
        try:
            self.response = await session.post(
                self.endpoint.url,
                data=data,
                headers=self.endpoint.headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except Exception as exc:
            raise self._translate(exc) from exc
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
