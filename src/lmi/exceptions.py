"""The one exception tree of lmi.

Every error lmi raises on its own account derives from :class:`LMIError`; each also derives from the
builtin a caller would naturally catch (``ValueError`` for bad input, ``TimeoutError`` for waits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LMIError(Exception):
    """Base class of every error raised by lmi itself."""


class ConfigurationError(LMIError, ValueError):
    """A model or limiter configuration that cannot be used; the message names the offending key."""


class JSONSchemaValidationError(LMIError, ValueError):
    """A completion did not match the requested ``output_type``.

    ``text`` carries the raw completion so nothing is lost.
    """

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class BudgetExceeded(LMIError):
    """A call's worst-case cost does not fit in what is left of a budget; nothing was sent.

    ``limit_usd``, ``spent_usd`` and ``reserved_usd`` describe the budget when it refused, ``needed_usd``
    the call's worst case (all None when the model has no price a budget could hold it to).
    """

    def __init__(
        self,
        message: str,
        *,
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        reserved_usd: float | None = None,
        needed_usd: float | None = None,
    ) -> None:
        super().__init__(message)
        self.limit_usd, self.spent_usd = limit_usd, spent_usd
        self.reserved_usd, self.needed_usd = reserved_usd, needed_usd


class MalformedResponseError(LMIError, ValueError):
    """A billed response could not be turned into results (e.g. tool-call arguments that are not JSON).

    The call was paid for and is already tracked; ``results`` holds what was built (a result that could
    not be parsed has ``messages=None`` and keeps its text, token counts and cost).
    """

    def __init__(self, message: str, results: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.results = list(results)

    @property
    def result(self) -> object | None:
        return self.results[0] if self.results else None


class RateLimitTimeout(LMIError, TimeoutError):
    """A rate-limit acquisition could not complete within its timeout."""


class RedisUnavailableError(LMIError, ConnectionError):
    """Redis could not be reached (or did not answer) within the limiter's ``redis_timeout``.

    It is the limiter's trouble, not the provider's: an LLM call never retries on it. ``problem`` says
    what happened and ``hint`` what a Python caller can do, so that other front ends (the ``lmi``
    command) can give their own advice.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem}. {hint}" if hint else problem)
        self.problem, self.hint = problem, hint


class ModelCallError(LMIError, RuntimeError):
    """A call failed on every model it was allowed to try.

    ``attempts`` holds ``(model, exception)`` pairs in the order they were tried; the message names each
    model with the provider's own message.
    """

    def __init__(self, attempts: Sequence[tuple[str, BaseException]]) -> None:
        self.attempts = list(attempts)
        lines = [f"  {model}: {type(exc).__name__}: {exc}" for model, exc in self.attempts]
        tried = ", ".join(dict.fromkeys(model for model, _ in self.attempts))
        super().__init__(f"LLM call failed on every model tried ({tried}):\n" + "\n".join(lines))

    @property
    def last_error(self) -> BaseException | None:
        return self.attempts[-1][1] if self.attempts else None

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from its attempts, not its message
        return type(self), (self.attempts,)


class AllModelsExhaustedError(ModelCallError):
    """Every model of the chain ran out of retries or was skipped over (fhlmi's name for ModelCallError).

    ``last_exc`` is the last error seen; ``attempts`` (from :class:`ModelCallError`) names every model
    tried and why it failed. ``except ModelCallError`` and ``except AllModelsExhaustedError`` both catch it.
    """

    def __init__(
        self,
        last_exc: BaseException | None = None,
        *,
        attempts: Sequence[tuple[str, BaseException]] | None = None,
    ) -> None:
        if attempts is None:
            attempts = [] if last_exc is None else [("unknown", last_exc)]
        super().__init__(attempts)
        self.last_exc = last_exc if last_exc is not None else self.last_error

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exhausted, (self.last_exc, self.attempts)


class ModelRefusalError(LMIError, RuntimeError):
    """The provider finished with ``content_filter``: the model refused to answer.

    ``response`` is what the provider sent (a litellm ``ModelResponse`` or an :class:`~lmi.LLMResult`).
    """

    def __init__(self, message: str, *, model: str, finish_reason: str, response: Any = None) -> None:
        super().__init__(message)
        self.model, self.finish_reason, self.response = model, finish_reason, response

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_refusal, (str(self), self.model, self.finish_reason, self.response)


class ResponseValidationError(LMIError, RuntimeError):
    """A ``response_validator`` rejected a completion; it is retried like a transient provider error."""


class StreamingUnsupportedError(LMIError, NotImplementedError, ValueError):
    """What a streamed call (one with callbacks) cannot do, refused before anything is sent."""


class EmbeddingBatchError(LMIError, RuntimeError):
    """One batch of an embedding run failed; nothing of the run is returned.

    ``batch`` is the batch's position (0-based) among ``batches``; ``first`` and ``last`` are the indices
    (inclusive) in the caller's list of the first and last text the batch carried. The provider's error is
    the ``__cause__``.
    """

    def __init__(self, model: str, batch: int, batches: int, first: int, last: int, cause: Exception) -> None:
        self.model, self.batch, self.batches, self.first, self.last = model, batch, batches, first, last
        super().__init__(
            f"{model}: embedding batch {batch + 1} of {batches} (texts {first}..{last}) failed: "
            f"{type(cause).__name__}: {cause}"
        )


class BatchItemError(LMIError, RuntimeError):
    """One item of a batch has no answer: the provider reported an error, or its batch expired or was
    cancelled. It stands in the item's place in ``call_batch``'s results; ``index`` is the item's position
    in the caller's list, ``kind`` one of ``errored``, ``expired``, ``cancelled``, ``reason`` the provider's
    words."""

    def __init__(self, index: int, custom_id: str, kind: str, reason: str) -> None:
        self.index, self.custom_id, self.kind, self.reason = index, custom_id, kind, reason
        super().__init__(f"batch item {index} ({custom_id}) {kind}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[int, str, str, str]]:
        return type(self), (self.index, self.custom_id, self.kind, self.reason)


def _rebuild_exhausted(
    last_exc: BaseException | None, attempts: Sequence[tuple[str, BaseException]]
) -> AllModelsExhaustedError:
    return AllModelsExhaustedError(last_exc, attempts=attempts)


def _rebuild_refusal(message: str, model: str, finish_reason: str, response: Any) -> ModelRefusalError:
    return ModelRefusalError(message, model=model, finish_reason=finish_reason, response=response)


__all__ = [
    "AllModelsExhaustedError",
    "BatchItemError",
    "BudgetExceeded",
    "ConfigurationError",
    "EmbeddingBatchError",
    "JSONSchemaValidationError",
    "LMIError",
    "MalformedResponseError",
    "ModelCallError",
    "ModelRefusalError",
    "RateLimitTimeout",
    "RedisUnavailableError",
    "ResponseValidationError",
    "StreamingUnsupportedError",
]
