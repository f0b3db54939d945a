"""Retries with backoff, then the next model: a small wrapper around one provider attempt.

Every transport's attempt runs inside :func:`with_retries_and_fallbacks`, which also owns the clocks:
``timeout`` bounds each whole attempt (connect, send, the full body or the whole stream) and
``total_timeout`` the call, retries and fallbacks included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from lmi import telemetry
from lmi.exceptions import (
    AllModelsExhaustedError,
    ModelRefusalError,
    RateLimitTimeout,
    RedisUnavailableError,
    ResponseValidationError,
)
from lmi.llms.config import RETRY_AFTER_CEILING, Deployment, RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


_RETRY_CLASSES = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
)
_FALLBACK_CLASSES = (
    "NotFoundError",
    "AuthenticationError",
    "PermissionDeniedError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
)
_FALLBACK_STATUS = frozenset({401, 403, 404})
_FALLBACK_MESSAGES = (
    "too much media",
    "image dimensions exceed max allowed size",
    "text content blocks must contain non-whitespace text",
    "limited access to this content for safety reasons",
    "this content was flagged for possible biological risk",
)


def _litellm_classes(names: tuple[str, ...]) -> tuple[type, ...]:
    # An exception can only be one of litellm's if litellm was imported: never import it to find out.
    module = sys.modules.get("litellm")
    return tuple(getattr(module, name) for name in names) if module is not None else ()


def should_retry(exc: BaseException) -> bool:
    """fhlmi's retry rule: litellm rate-limit, timeout, connection and 5xx errors, and rejected responses."""
    return isinstance(exc, (ResponseValidationError, *_litellm_classes(_RETRY_CLASSES)))


def should_fallback(exc: BaseException) -> bool:
    """fhlmi's rule for moving to the next model: errors that the same model would only repeat."""
    if isinstance(exc, (ModelRefusalError, *_litellm_classes(_FALLBACK_CLASSES))):
        return True
    bad_request = _litellm_classes(("BadRequestError",))
    if not bad_request or not isinstance(exc, bad_request):
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in _FALLBACK_STATUS:
        return True
    text = str(exc).lower()
    return any(message in text for message in _FALLBACK_MESSAGES)


def is_provider_error(exc: BaseException) -> bool:
    """An error that came from talking to a provider (as opposed to a bug or bad input on our side)."""
    if isinstance(exc, RedisUnavailableError):
        return False  # the limiter's store failed, once and clearly: no provider was involved
    if isinstance(
        exc, RateLimitTimeout | TimeoutError | ConnectionError | ResponseValidationError | ModelRefusalError
    ):
        return True
    module = type(exc).__module__
    return module.startswith(("litellm", "openai", "httpx", "httpcore", "aiohttp", "anthropic"))


def is_retryable(exc: BaseException) -> bool:
    """Worth trying the same model again: rate limits, timeouts, lost connections and 5xx."""
    if isinstance(exc, RateLimitTimeout):
        return False  # our own limiter already waited as long as allowed
    if isinstance(exc, ResponseValidationError):
        return True
    status = _status(exc)
    if status is not None:
        return status in _RETRYABLE_STATUS or status >= 500
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names & {"APIConnectionError", "Timeout", "APITimeoutError", "TimeoutError", "ConnectionError"}
        or names
        & {"ConnectError", "ReadTimeout", "RemoteProtocolError", "ReadError", "ServerDisconnectedError"}
    )


def _number(value: Any) -> float | None:
    """A finite, non-negative number of (milli)seconds; NaN would make asyncio.sleep wait forever."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def _seconds_until(value: Any) -> float | None:
    """``retry-after`` as seconds: a number, or an HTTP date (RFC 9110); None when it is neither."""
    seconds = _number(value)
    if seconds is not None or not isinstance(value, str):
        return seconds
    from email.utils import parsedate_to_datetime  # rare: keep email out of model construction

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are in GMT
    return _number(when.timestamp() - time.time())  # a date in the past means "now"


def retry_after(exc: BaseException) -> float | None:
    """The provider's ``retry-after`` (seconds or an HTTP date) or ``retry-after-ms``, when it sent one."""
    for source in (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    ):
        if not source:
            continue
        try:
            ms, value = source.get("retry-after-ms"), source.get("retry-after")
        except (TypeError, AttributeError):
            continue
        if ms is not None and (milliseconds := _number(ms)) is not None:
            return milliseconds / 1000
        if value is not None and (seconds := _seconds_until(value)) is not None:
            return seconds
    return None


@dataclass(slots=True)
class _AttemptClock:
    """The running attempt's timeout, so a transport can leave its limiter wait off the clock."""

    timeout: asyncio.Timeout
    seconds: float | None  # the per-attempt timeout
    deadline: float | None  # loop time at which the call's total_timeout runs out


_CLOCK: ContextVar[_AttemptClock | None] = ContextVar("lmi_attempt_clock", default=None)


@contextlib.contextmanager
def off_the_attempt_clock() -> Iterator[None]:
    """Wait for our own rate limiter without spending the attempt's ``timeout``.

    The attempt's clock restarts when the block ends; the call's ``total_timeout`` keeps running.
    """
    clock = _CLOCK.get()
    if clock is None or clock.seconds is None:
        yield
        return
    clock.timeout.reschedule(clock.deadline)
    yield  # on an exception the attempt is over: nothing to restart
    restart = asyncio.get_running_loop().time() + clock.seconds
    clock.timeout.reschedule(restart if clock.deadline is None else min(restart, clock.deadline))


async def _bounded(
    attempt: Callable[[Deployment], Awaitable[T]],
    deployment: Deployment,
    seconds: float | None,
    deadline: float | None,
) -> T:
    """``attempt(deployment)``, cut off after ``seconds`` or at ``deadline`` with a TimeoutError."""
    if seconds is None and deadline is None:
        return await attempt(deployment)
    now = asyncio.get_running_loop().time()
    ends = [when for when in (None if seconds is None else now + seconds, deadline) if when is not None]
    try:
        async with asyncio.timeout_at(min(ends)) as timeout:
            token = _CLOCK.set(_AttemptClock(timeout, seconds, deadline))
            try:
                return await attempt(deployment)
            finally:
                _CLOCK.reset(token)
    except TimeoutError as exc:
        if not timeout.expired():
            raise  # the transport's or the limiter's own timeout: it speaks for itself
        if deadline is not None and asyncio.get_running_loop().time() >= deadline - 1e-3:
            raise TimeoutError(f"{deployment.name}: the call's total_timeout ran out") from exc
        raise TimeoutError(f"{deployment.name}: no complete answer within timeout={seconds:g} s") from exc


async def with_retries_and_fallbacks(
    chain: Sequence[Deployment],
    policy: RetryPolicy,
    attempt: Callable[[Deployment], Awaitable[T]],
    *,
    attempt_timeout: Callable[[Deployment], float | None] | None = None,
    total_timeout: float | None = None,
    delivered: Callable[[], bool] | None = None,
) -> T:
    """Run ``attempt`` on each deployment in turn until one succeeds.

    Retryable errors are retried on the same deployment with exponential backoff capped at
    ``max_backoff``, or after the provider's ``retry-after`` whatever ``max_backoff`` says (a
    ``retry-after`` above :data:`~lmi.llms.config.RETRY_AFTER_CEILING` moves on instead of waiting); once
    retries run out, or on an error the same model would only repeat (:func:`should_fallback`: not found,
    authentication, context window, refusal...), the next deployment is tried. ``attempt_timeout(deployment)``
    bounds each whole attempt; ``total_timeout`` bounds everything, and a retry that could not start before
    it runs out is not waited for. Once ``delivered()`` is true (text reached streaming callbacks) a failure
    is final, so nothing is delivered twice. Any other error (a plain bad request, our limiter's timeout, a
    bug, cancellation) propagates as itself, the provider's own class, with a note naming the attempts
    before it. When every deployment failed, one :class:`AllModelsExhaustedError` (a
    :class:`ModelCallError`) names each model tried and why.
    """
    attempts: list[tuple[str, BaseException]] = []
    attempt = telemetry.traced_attempts(attempt)  # a child span per attempt, when traces are recorded
    loop = asyncio.get_running_loop()
    deadline = None if total_timeout is None else loop.time() + total_timeout
    for deployment in chain:
        seconds = None if attempt_timeout is None else attempt_timeout(deployment)
        retries = policy.num_retries if deployment.num_retries is None else deployment.num_retries
        for retry in range(retries + 1):
            if deadline is not None and loop.time() >= deadline:
                if not attempts:
                    attempts.append((deployment.name, TimeoutError(f"total_timeout={total_timeout:g} s")))
                raise AllModelsExhaustedError(attempts[-1][1], attempts=attempts) from attempts[-1][1]
            try:
                return await _bounded(attempt, deployment, seconds, deadline)
            except Exception as exc:
                if not is_provider_error(exc):
                    for model, earlier in attempts:
                        exc.add_note(f"earlier attempt on {model}: {type(earlier).__name__}: {earlier}")
                    raise
                attempts.append((deployment.name, exc))
                if delivered is not None and delivered():
                    # text reached the callbacks: never repeat it. Still the chain's error, as in fhlmi
                    # (which streams before retrying), e.g. last_exc a ModelRefusalError on content_filter.
                    raise AllModelsExhaustedError(exc, attempts=attempts) from exc
                retryable = is_retryable(exc)
                if not retryable and not should_fallback(exc):
                    if len(attempts) > 1:
                        exc.add_note(_earlier_attempts(attempts[:-1]))
                    raise
                if retry == retries or not retryable:
                    logger.info("%s failed (%s); moving on", deployment.name, type(exc).__name__)
                    break
                asked = retry_after(exc)
                if asked is not None and asked > RETRY_AFTER_CEILING:
                    logger.info("%s asks to wait %.0fs; moving on", deployment.name, asked)
                    break
                delay = policy.delay(retry, asked)
                if deadline is not None and loop.time() + delay >= deadline:
                    logger.info("%s: a retry in %.2fs would pass total_timeout", deployment.name, delay)
                    break
                logger.info("%s failed (%s); retry %d in %.2fs", deployment.name, exc, retry + 1, delay)
                with telemetry.waiting("retry_backoff", seconds=delay):
                    await asyncio.sleep(delay)
    last = attempts[-1][1] if attempts else None
    raise AllModelsExhaustedError(last, attempts=attempts) from last


def _earlier_attempts(attempts: Sequence[tuple[str, BaseException]]) -> str:
    lines = [f"  {model}: {type(exc).__name__}: {exc}" for model, exc in attempts]
    return "lmi: attempts before this one:\n" + "\n".join(lines)
