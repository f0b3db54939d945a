"""The HTTP clients the litellm transport hands litellm, so a request's charge counts when it is written.

litellm spends milliseconds of CPU per call between building a request and writing it: charged before
litellm is called, a burst of thousands of calls would reach the provider up to seconds after their
grants, unevenly, and the provider would see more requests in a window than the limiter granted. So
where litellm takes a caller's client (its ``client=`` argument), the litellm transport passes its own:
an httpx client whose transport sends on the loop's pooled aiohttp session (the native transport's, of
the model's ``max_connections``) with a body that awaits the call's ``before_send`` right before its
first byte goes out, once the connection is open (or taken from the pool). The call is charged there
(budgets were reserved before; the rate limits and the concurrency slot are taken here), so it counts
where the provider counts it, and a request that failed before that point (refused, unresolvable, a
connect timeout, cancelled) took nothing. A call waiting for the limiter holds its connection; a wait
for a connection behind such calls is limiter time too: no pool timeout, and off the attempt's
``timeout``. (httpx's own connection pool is not used: it spends time quadratic in the number of
waiting requests, 5× litellm's CPU per call at 1,000 concurrent calls.)

Which calls get the client (litellm wants a different client type per provider family):

* chat and embeddings to provider ``openai`` (bare OpenAI models, and every ``openai/<model>`` with an
  ``api_base``): an ``openai.AsyncOpenAI`` on that client, with the credentials litellm itself resolves
  (argument, ``litellm.api_key``/``openai_key``, ``OPENAI_API_KEY``; the base likewise);
* chat to provider ``anthropic``, and the Responses API to provider ``openai``: litellm's
  ``AsyncHTTPHandler`` on that client;
* a call litellm answers without writing on our client (it routed the call elsewhere): charged once
  answered, late rather than never;
* every other provider: litellm's own client, charged right before litellm is called. There the charge
  counts from the grant plus ``REQUEST_LATENCY`` (a burst can reach the provider late and denser than the
  limit), and is handed back only when litellm's error shows a failed connect.

The clients are built once per event loop (and credentials, pool size) and closed with it. TLS and proxies
are the aiohttp session's (verified; ``HTTPS_PROXY``/``NO_PROXY``), as on the native transport; a call
with litellm's ``ssl_verify`` set (or ``litellm.ssl_verify`` changed) keeps litellm's own client.
Nothing of litellm's own state is touched: a user's own litellm calls are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from lmi.llms.config import DEFAULT_MAX_CONNECTIONS
from lmi.llms.retry import off_the_attempt_clock
from lmi.llms.transports.session import per_loop, session_for
from lmi.llms.transports.wire import BeforeSend, Charge

if TYPE_CHECKING:
    import httpx

_SENDING: ContextVar[Sending | None] = ContextVar("lmi_litellm_sending", default=None)


class Sending:
    """One call on its way through our client: charged right before its first byte is written."""

    __slots__ = ("before_send", "charge", "clock", "refused", "written")

    def __init__(self, before_send: BeforeSend) -> None:
        self.before_send = before_send
        self.charge: Charge | None = None
        self.clock: contextlib.AbstractContextManager[None] | None = None
        self.written = False  # charged, its first byte going out: it may have reached the server
        self.refused: BaseException | None = None  # the limiter's own failure

    def waiting(self) -> None:
        """A request of this call enters our client. Until it is charged, a wait (for a connection held
        by a call waiting for the limiter, or for the limiter) is our limiter's, not the attempt's."""
        if self.clock is None and not self.written:
            self.clock = off_the_attempt_clock()
            self.clock.__enter__()

    async def before_write(self) -> None:
        """Awaited right before the request's first byte is written: the call is charged here."""
        if self.refused is not None:  # an SDK retry after the limiter refused: refuse again
            raise self.refused
        if self.written:  # an SDK retry of a request already charged
            return
        try:
            self.charge = await self.before_send()
        except BaseException as exc:
            self.refused = exc
            raise
        self.written = True
        if self.clock is not None:  # the attempt's clock runs again from here
            self.clock.__exit__(None, None, None)
            self.clock = None


def _charging_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    import aiohttp
    import httpx
    import yarl
    from litellm.llms.custom_httpx.aiohttp_transport import AiohttpResponseStream, map_aiohttp_exceptions

    from lmi.llms.transports.native import charged_body

    class ChargingTransport(httpx.AsyncBaseTransport):
        """httpx requests sent on the loop's pooled aiohttp session (the native transport's, of
        ``max_connections``), their body charging the call that sends them right before it is written."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            timeout = request.extensions.get("timeout") or {}
            body = await request.aread() or None
            data: Any = body
            sending = _SENDING.get()
            if sending is not None and body is not None:
                sending.waiting()
                data = charged_body()(body, sending.before_write)
            session = await session_for(max_connections)
            with map_aiohttp_exceptions():
                response = await session.request(
                    request.method,
                    yarl.URL(str(request.url), encoded=True),
                    headers=request.headers,
                    data=data,
                    allow_redirects=False,  # httpx follows them, as litellm's clients do
                    auto_decompress=False,  # httpx decodes
                    # No pool timeout: a wait for a connection is a wait behind calls waiting for our
                    # limiter; connect and read as the caller asked.
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=None,
                        sock_connect=timeout.get("connect"),
                        sock_read=timeout.get("read"),
                    ),
                )
            return httpx.Response(
                status_code=response.status,
                headers=response.headers,
                stream=AiohttpResponseStream(response),
                request=request,
            )

    return ChargingTransport()


def _new_httpx_client(max_connections: int) -> httpx.AsyncClient:
    import httpx
    from litellm.llms.custom_httpx.http_handler import blocked_cookie_jar, get_default_headers

    # TLS and proxies (HTTP(S)_PROXY, NO_PROXY) are the aiohttp session's, as on the native transport.
    return httpx.AsyncClient(
        transport=_charging_transport(max_connections),
        headers=get_default_headers(),  # litellm's User-Agent, as its handlers send (the SDK sets its own)
        cookies=blocked_cookie_jar(),  # as litellm's handlers: no cookies carried between calls
        follow_redirects=True,  # as litellm's clients
        trust_env=False,
        timeout=httpx.Timeout(600.0, connect=30.0),  # litellm passes each request's own timeout
    )


async def _kept(wrapper: Any) -> None:
    """Closing a wrapper of the loop's httpx client: nothing to do, that client is closed with the loop."""


async def _httpx_client(max_connections: int) -> httpx.AsyncClient:
    async def close(client: httpx.AsyncClient) -> None:
        await client.aclose()

    def create() -> httpx.AsyncClient:
        return _new_httpx_client(max_connections)

    return await per_loop(("litellm-httpx", max_connections), create, close)


async def _http_handler(max_connections: int) -> Any:
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    http = await _httpx_client(max_connections)

    def create() -> Any:
        handler = AsyncHTTPHandler(transport=http._transport)  # its own client is replaced at once
        handler.client = http
        return handler

    return await per_loop(("litellm-handler", max_connections), create, _kept)


async def _openai_client(
    api_key: str | None, api_base: str | None, max_retries: Any, max_connections: int
) -> Any:
    import openai
    from litellm.llms.openai.common_utils import get_openai_credentials

    credentials = get_openai_credentials(api_base=api_base, api_key=api_key)
    if not credentials.api_key:  # litellm says so in its own words
        return None
    http = await _httpx_client(max_connections)

    retries = max_retries if isinstance(max_retries, int) else 0

    def create() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=credentials.api_key,
            base_url=credentials.api_base,
            http_client=http,  # type: ignore[arg-type]  # the SDK takes httpx clients, as litellm's
            max_retries=retries,
        )

    # litellm sets max_retries on the client it is given: one client per value, as litellm caches them
    key = ("litellm-openai", credentials.api_key, credentials.api_base, retries, max_connections)
    return await per_loop(key, create, _kept)


def _litellm() -> Any:
    from lmi._lazy import litellm

    return litellm()


def _provider(request: dict[str, Any]) -> str | None:
    try:
        _, provider, _, _ = _litellm().get_llm_provider(
            model=request["model"],
            custom_llm_provider=request.get("custom_llm_provider"),
            api_base=request.get("api_base"),
            api_key=request.get("api_key"),
        )
    except Exception:  # litellm cannot place it: it will say so itself when called
        return None
    return str(provider)


async def client_for(request: dict[str, Any], call: str, max_connections: int) -> Any:
    """Our client for a litellm ``call`` ("completion", "embedding", "responses") with ``request``, on
    a pool of ``max_connections``, or None where litellm must use its own (see the module docstring)."""
    if request.get("client") is not None:  # the caller's own: theirs to keep
        return None
    if request.get("ssl_verify") is not None or _litellm().ssl_verify is not True:
        return None  # litellm's own TLS settings (a self-signed server): litellm's own client honours them
    provider = _provider(request)
    if provider == "openai":
        if call == "responses":
            return await _http_handler(max_connections)
        if request.get("organization") is None and not request.get("workload_identity"):
            return await _openai_client(
                request.get("api_key"), request.get("api_base"), request.get("max_retries"), max_connections
            )
        return None
    if provider == "anthropic" and call == "completion":
        return await _http_handler(max_connections)
    return None


async def send_charged(
    call: Callable[..., Awaitable[Any]],
    request: dict[str, Any],
    kind: str,
    before_send: BeforeSend | None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Any:
    """``await call(**request)`` through litellm, charging ``before_send`` right before the request is
    written where litellm takes our client, else right before ``call``; the charge goes back when the
    request never reached the server (see the module docstring)."""
    if before_send is None:
        return await call(**request)
    client = await client_for(request, kind, max_connections)
    if client is None:
        charge = await before_send()
        try:
            return await call(**request)
        except Exception as exc:
            if charge is not None and _never_connected(exc):
                await charge.cancel()
            raise
    sending = Sending(before_send)
    token = _SENDING.set(sending)  # read by our client's transport, in this task
    try:
        response = await call(**request, client=client)
    except BaseException:
        if sending.refused is not None:  # the limiter's own failure, wrapped by the SDK on its way out
            raise sending.refused from None
        raise  # nothing charged unless written (then it may have reached the server: it stays)
    finally:
        _SENDING.reset(token)
    if sending.clock is not None:  # answered without our write: the attempt's clock runs again
        sending.clock.__exit__(None, None, None)
    if not sending.written:
        # litellm answered without writing on our client (it routed the call elsewhere, e.g. an OpenAI
        # model it bridges to the Responses API): the request went out uncharged, so it is charged now,
        # late rather than never.
        await before_send()
    return response


def _never_connected(exc: BaseException) -> bool:
    """Whether litellm failed to connect at all (refused, unresolvable, TLS, connect timeout), for the
    providers it sends on its own client: its exception keeps the HTTP client's own one as a cause."""
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
