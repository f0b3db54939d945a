"""Provider failures on the native transport, raised as the exceptions litellm raises for them.

Callers write ``except litellm.RateLimitError`` and the retry policy reads ``status_code``; both must
behave the same whichever transport sent the call. ``import litellm.exceptions`` imports all of litellm
(its package ``__init__`` runs first: seconds and ~3,000 modules), so the exception is built lazily: the
first failure pays that import, a successful call never does.

The status → class tables reproduce what litellm raises for each provider (measured against loopback
servers answering each status; see tests/llms/transports/test_errors.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lmi._lazy import litellm

# (class name, status_code litellm reports); a status missing here is raised as APIError(status).
_OPENAI: dict[int, tuple[str, int]] = {
    400: ("BadRequestError", 400),
    401: ("AuthenticationError", 401),
    404: ("NotFoundError", 404),
    408: ("Timeout", 408),
    422: ("BadRequestError", 422),
    429: ("RateLimitError", 429),
    500: ("InternalServerError", 500),
    502: ("BadGatewayError", 502),
    503: ("ServiceUnavailableError", 503),
    504: ("Timeout", 504),
}
_ANTHROPIC: dict[int, tuple[str, int]] = {
    **_OPENAI,
    403: ("PermissionDeniedError", 403),
    409: ("BadRequestError", 409),
    413: ("BadRequestError", 400),
    529: ("InternalServerError", 500),  # "overloaded"
}
_TABLES = {"openai": _OPENAI, "anthropic": _ANTHROPIC}
_CONTEXT_WINDOW = re.compile(
    r"maximum context length|context_length_exceeded|prompt is too long|too many tokens", re.IGNORECASE
)
_PREVIEW = 300  # characters of an unexpected body quoted in the message


def provider_message(body: str) -> str:
    """The provider's own error message out of an error body (OpenAI or Anthropic shape), or the body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:_PREVIEW] or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return body.strip()[:_PREVIEW]


def _httpx_response(status: int, url: str, headers: Mapping[str, str], body: str) -> Any:
    import httpx  # loaded with litellm by now

    request = httpx.Request("POST", url)
    return httpx.Response(status, headers=dict(headers), content=body.encode(), request=request)


def status_error(
    *,
    provider: str,
    deployment: str,
    model: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: str,
    detail: str | None = None,
) -> Exception:
    """The litellm exception for an HTTP answer that is not a usable completion.

    ``detail`` replaces the provider's message when the answer is malformed rather than an error (a 200
    that is not JSON, an error inside a 200): those are raised as litellm raises them.
    """
    exceptions = litellm().exceptions
    message = f"{deployment}: {provider} answered HTTP {status}: {detail or provider_message(body)}"
    response = _httpx_response(status, url, headers, body)
    name, reported = _TABLES[provider].get(status, ("APIError", status))
    if name == "BadRequestError" and status == 400 and _CONTEXT_WINDOW.search(body):
        name = "ContextWindowExceededError"
    cls = getattr(exceptions, name)
    if name == "APIError":
        exc = cls(status_code=status, message=message, llm_provider=provider, model=model, response=response)
    elif name == "Timeout":
        exc = cls(message=message, model=model, llm_provider=provider, exception_status_code=status)
    else:
        exc = cls(message=message, llm_provider=provider, model=model, response=response)
    exc.status_code = reported
    exc.litellm_response_headers = dict(headers)  # read by the retry policy for retry-after
    return exc


def malformed(
    *,
    provider: str,
    deployment: str,
    model: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: str,
    why: str,
) -> Exception:
    """A 200 whose body is not a completion (not JSON, truncated, an HTML page, an error object)."""
    preview = body.strip()[:_PREVIEW]
    detail = f"{why}; body starts: {preview!r}" if preview else f"{why}; the body is empty"
    if provider == "anthropic":  # litellm: "Unable to get json response", a connection error (500)
        exceptions = litellm().exceptions
        message = f"{deployment}: {provider} answered HTTP {status}: {detail}"
        exc = exceptions.APIConnectionError(message=message, llm_provider=provider, model=model)
        exc.status_code = 500
        return exc
    return _as_server_error(
        provider=provider, deployment=deployment, model=model, url=url, status=status, headers=headers,
        body=body, detail=detail,
    )  # fmt: skip


def _as_server_error(
    *,
    provider: str,
    deployment: str,
    model: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: str,
    detail: str,
) -> Exception:
    """A 2xx that is no completion, raised as litellm raises it: as the HTTP 500 it stands for (retried
    like one), its message naming the status the server really sent."""
    return status_error(
        provider=provider, deployment=deployment, model=model, url=url, status=500, headers=headers,
        body=body, detail=f"(HTTP {status}) {detail}",
    )  # fmt: skip


def error_in_body(
    *,
    provider: str,
    deployment: str,
    model: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: str,
) -> Exception:
    """A 2xx carrying an error object instead of a completion."""
    if provider == "anthropic":
        return _as_server_error(
            provider=provider, deployment=deployment, model=model, url=url, status=status, headers=headers,
            body=body, detail=f"error in the body: {provider_message(body)}",
        )  # fmt: skip
    exceptions = litellm().exceptions
    message = f"{deployment}: {provider} answered HTTP {status} with an error: {provider_message(body)}"
    exc = exceptions.APIError(status_code=status, message=message, llm_provider=provider, model=model)
    exc.status_code = None  # as litellm reports it: not a status to retry on
    return exc


def connection_error(
    *, provider: str, deployment: str, model: str, url: str, cause: BaseException
) -> Exception:
    exceptions = litellm().exceptions
    message = f"{deployment}: connection to {url} failed: {type(cause).__name__}: {cause}"
    return exceptions.APIConnectionError(message=message, llm_provider=provider, model=model)


def timeout_error(
    *, provider: str, deployment: str, model: str, url: str, seconds: float | None
) -> Exception:
    exceptions = litellm().exceptions
    limit = f" after {seconds:g} s" if seconds is not None else ""
    message = f"{deployment}: {url} timed out{limit}"
    return exceptions.Timeout(message=message, model=model, llm_provider=provider)
