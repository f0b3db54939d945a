"""lmi.retry, fhlmi's public retry policy: which errors retry, which fall back, and its tenacity loop."""

from __future__ import annotations

import httpx
import litellm
import pytest
import tenacity

from lmi.exceptions import ModelRefusalError, ResponseValidationError
from lmi.retry import BACKOFF_CAP, BACKOFF_INITIAL, model_retrying, should_fallback, should_retry


def _error(cls: type[Exception], status: int = 400, message: str = "x") -> Exception:
    response = httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    return cls(message=message, llm_provider="openai", model="gpt-4o", response=response)  # type: ignore[call-arg]


async def test_model_retrying_retries_only_should_retry_errors_then_reraises() -> None:
    retrying = model_retrying(2)
    assert isinstance(retrying, tenacity.AsyncRetrying)
    retrying = retrying.copy(wait=tenacity.wait_none())  # the policy's full jitter would sleep seconds
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        raise _error(litellm.RateLimitError, 429)

    with pytest.raises(litellm.RateLimitError):
        await retrying(flaky)
    assert len(attempts) == 3  # the first try and max_retries=2 retries

    async def bad_request() -> str:
        attempts.append(1)
        raise _error(litellm.BadRequestError)

    attempts.clear()
    with pytest.raises(litellm.BadRequestError):
        await retrying(bad_request)
    assert len(attempts) == 1
    assert (BACKOFF_INITIAL, BACKOFF_CAP) == (1.0, 30.0)


def test_retry_and_fallback_classes() -> None:
    assert should_retry(ResponseValidationError("invalid"))
    assert should_fallback(ModelRefusalError("no", model="m", finish_reason="content_filter"))
    assert not should_fallback(_error(litellm.BadRequestError))
    assert should_fallback(_error(litellm.BadRequestError, message="Too much media in this request"))
    assert should_fallback(_error(litellm.BadRequestError, status=403))
