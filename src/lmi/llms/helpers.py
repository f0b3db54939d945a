"""Small public helpers fhlmi code imports from ``lmi.llms``: model names, logprobs, JSON, usage, limits.

Functions typed on litellm objects accept them (and plain dicts, which litellm also hands back).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from lmi.constants import CHARACTERS_PER_TOKEN_ASSUMPTION
from lmi.exceptions import JSONSchemaValidationError
from lmi.llms.results import _get, top_logprobs_of, usage_from_litellm

F = TypeVar("F", bound=Callable[..., Any])


class CommonLLMNames(StrEnum):
    """Model names in common use, pinned to dated snapshots where the provider offers one."""

    GPT_5 = "gpt-5-2025-08-07"
    GPT_5_MINI = "gpt-5-mini-2025-08-07"
    GPT_6_LUNA = "openai/gpt-6-luna"
    GPT_41 = "gpt-4.1-2025-04-14"
    GPT_4O = "gpt-4o-2024-11-20"
    GPT_35_TURBO = "gpt-3.5-turbo-0125"
    CLAUDE_45_HAIKU = "claude-haiku-4-5-20251001"
    CLAUDE_37_SONNET = "claude-3-7-sonnet-20250219"
    CLAUDE_45_SONNET = "claude-sonnet-4-5-20250929"
    CLAUDE_46_SONNET = "claude-sonnet-4-6"
    CLAUDE_45_OPUS = "claude-opus-4-5-20251101"
    CLAUDE_46_OPUS = "claude-opus-4-6"
    OPENAI_TEST = "gpt-4o-mini-2024-07-18"
    # Aliases (same value: not iterated, ``.name`` is the canonical member's)
    OPENAI_BASELINE = "gpt-4o-2024-11-20"
    ANTHROPIC_TEST = "claude-haiku-4-5-20251001"


def sum_logprobs(choice: Any) -> float | None:
    """The summed log-probability of a litellm ``Choices`` (``None`` without logprobs), or of a list."""
    if isinstance(choice, list):
        return sum(choice)
    logprobs = _get(choice, "logprobs") if isinstance(choice, BaseModel | dict) else None
    content = _get(logprobs, "content")
    if content is None:
        return None
    return float(sum(_get(token, "logprob") or 0.0 for token in content))


def extract_top_logprobs(completion: Any) -> list[list[tuple[str, float]]] | None:
    """Per generated token, its ``(token, logprob)`` alternatives, from a litellm ``Choices``."""
    return top_logprobs_of(_get(completion, "logprobs"))


def _json_part(text: str) -> str:
    """The part after the last ```json fence and before the next ``` (the whole text without one)."""
    if "```json" not in text:
        return text
    return text.rsplit("```json", 1)[1].split("```", 1)[0]


def validate_json_completion(completion: Any, output_type: type[BaseModel] | TypeAdapter | Mapping) -> None:
    """Check every choice's content against ``output_type``, unwrapping a ```json fence in place.

    A pydantic class or ``TypeAdapter`` mismatch raises :class:`lmi.JSONSchemaValidationError`; for a JSON
    schema (a mapping) litellm's own ``JSONSchemaValidationError`` is raised, as litellm validates it.
    """
    for choice in completion.choices:
        message = choice.message
        if not message.content:
            continue
        message.content = _json_part(message.content)
        try:
            if isinstance(output_type, Mapping):
                from litellm.litellm_core_utils.json_validation_rule import validate_schema

                validate_schema(schema=dict(output_type), response=message.content)
            elif isinstance(output_type, TypeAdapter):
                output_type.validate_json(message.content)
            else:
                output_type.model_validate_json(message.content)
        except ValidationError as exc:
            raise JSONSchemaValidationError(
                f"Completion does not match the requested output type: {exc}", text=message.content
            ) from exc


def parse_cached_usage(usage: Any) -> tuple[int | None, int | None]:
    """``(cache read tokens, cache creation tokens)`` of a litellm ``Usage``; ``(None, None)`` without one."""
    parsed = usage_from_litellm(usage) if usage else None
    if parsed is None:
        return None, None
    return parsed.cache_read_tokens, parsed.cache_creation_tokens


def _message_dicts(messages: Iterable[Any]) -> list[dict[str, Any]]:
    dicts = []
    for message in messages:
        if isinstance(message, Mapping):
            dicts.append(dict(message))
        else:
            data = message.model_dump(by_alias=True, exclude_none=True)
            data.pop("info", None)
            dicts.append(data)
    return dicts


def estimate_message_tokens(messages: Iterable[Any], model: str, **kwargs: Any) -> int:
    """Prompt tokens of ``messages`` (aviary Messages or dicts) for ``model``, as litellm counts them."""
    from lmi._lazy import litellm

    return int(litellm().token_counter(model=model, messages=_message_dicts(messages), **kwargs))


def _estimated_tokens(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    messages = kwargs.get("messages", args[0] if args else None)
    if isinstance(messages, str):
        chars = len(messages)
    else:
        chars = sum(len(str(_get(m, "content") or "")) for m in messages or ())
    return int(chars / CHARACTERS_PER_TOKEN_ASSUMPTION)


def _limiter_method(obj: Any, name: str, decorator: str) -> Callable[..., Any]:
    method = getattr(obj, name, None)
    if method is None:
        raise NotImplementedError(f"@{decorator} needs {type(obj).__name__} to define {name}()")
    return method


def rate_limited(func: F) -> F:
    """Charge ``self.check_rate_limit`` with the prompt's estimated tokens, then each result's completion."""

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            check = _limiter_method(self, "check_rate_limit", "rate_limited")
            await check(_estimated_tokens(args, kwargs))
            async for item in func(self, *args, **kwargs):
                if getattr(item, "completion_count", None):
                    await check(item.completion_count)
                yield item

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        check = _limiter_method(self, "check_rate_limit", "rate_limited")
        await check(_estimated_tokens(args, kwargs))
        results = await func(self, *args, **kwargs)
        for item in results if isinstance(results, list) else [results]:
            if getattr(item, "completion_count", None):
                await check(item.completion_count)
        return results

    return wrapper  # type: ignore[return-value]


def request_limited(func: F) -> F:
    """Charge ``self.check_request_limit`` one request per call of the decorated async method."""

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            await _limiter_method(self, "check_request_limit", "request_limited")()
            async for item in func(self, *args, **kwargs):
                yield item

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        await _limiter_method(self, "check_request_limit", "request_limited")()
        return await func(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class _PassThrough:
    """Stored keyword arguments added to each call (the call's own win); no routing, no retries."""

    def __init__(self, **kwargs: Any) -> None:
        self._forced_kwargs = kwargs  # litellm.Router.__init__ is heavy and unused here

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        from lmi._lazy import litellm

        return await litellm().acompletion(*args, **{**self._forced_kwargs, **kwargs})

    async def aembedding(self, *args: Any, **kwargs: Any) -> Any:
        from lmi._lazy import litellm

        return await litellm().aembedding(*args, **{**self._forced_kwargs, **kwargs})

    async def aresponses(self, *args: Any, **kwargs: Any) -> Any:
        from lmi._lazy import litellm

        return await litellm().aresponses(*args, **{**self._forced_kwargs, **kwargs})

    async def atext_completion(self, *args: Any, **kwargs: Any) -> Any:
        from lmi._lazy import litellm

        return await litellm().atext_completion(*args, **{**self._forced_kwargs, **kwargs})


@functools.cache
def pass_through_router_class() -> type:
    """``PassThroughRouter``: a ``litellm.Router`` that sends every call straight to litellm's functions.

    Built on first access, since subclassing ``litellm.Router`` imports litellm. litellm releases that
    forbid subclassing their Router get a plain class with the same methods.
    """
    from lmi._lazy import litellm

    try:
        router: type = type("PassThroughRouter", (_PassThrough, litellm().Router), {})
    except TypeError:  # "litellm.Router cannot be subclassed" (litellm >= 1.100)
        router = type("PassThroughRouter", (_PassThrough,), {})
    router.__module__ = "lmi.llms"
    router.__doc__ = _PassThrough.__doc__
    return router


__all__ = [
    "CommonLLMNames",
    "estimate_message_tokens",
    "extract_top_logprobs",
    "parse_cached_usage",
    "rate_limited",
    "request_limited",
    "sum_logprobs",
    "validate_json_completion",
]
