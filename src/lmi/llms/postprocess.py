"""What happens to a provider's answer after it is billed: refusals, custom tool parsing, validation.

Each step runs after usage and cost are recorded, so an answer refused here is still paid for once.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from lmi._lazy import aviary_core, litellm
from lmi.exceptions import ModelRefusalError, ResponseValidationError
from lmi.llms.results import Choice, Completion
from lmi.types import LLMResult

CONTENT_FILTER = "content_filter"


def litellm_choice(choice: Choice) -> Any:
    """Our provider-neutral choice as the litellm ``Choices`` fhlmi's callers receive (imports litellm)."""
    message: dict[str, Any] = {"role": "assistant", "content": choice.text}
    if choice.tool_calls:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in choice.tool_calls
        ]
    if choice.reasoning_content is not None:
        message["reasoning_content"] = choice.reasoning_content
    return litellm().types.utils.Choices(
        finish_reason=choice.finish_reason, index=choice.index, message=message
    )


def litellm_response(completion: Completion) -> Any:
    """The completion as a litellm ``ModelResponse`` (whichever transport fetched it)."""
    usage = completion.usage
    return litellm().types.utils.ModelResponse(
        id=completion.response_id,
        model=completion.response_model,
        choices=[litellm_choice(choice) for choice in completion.choices],
        usage=None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    )


def refuse_content_filter(model: str, results: Sequence[LLMResult], completion: Completion | None) -> None:
    """Raise :class:`ModelRefusalError` when the first choice ended with ``content_filter``.

    Its ``response`` is the provider's answer as a litellm ``ModelResponse`` (fhlmi's), or the result
    when the answer was streamed.
    """
    if results and results[0].finish_reason == CONTENT_FILTER:
        raise ModelRefusalError(
            f"{model} refused to answer (finish_reason={CONTENT_FILTER!r})",
            model=model,
            finish_reason=CONTENT_FILTER,
            response=results[0] if completion is None else litellm_response(completion),
        )


def _takes_text(parser: Any) -> bool:
    """fhlmi's rule: a parser whose first parameter is annotated with the ``str`` class gets the text."""
    try:
        first = next(iter(inspect.signature(parser).parameters.values()), None)
    except (TypeError, ValueError):
        return False
    return first is not None and first.annotation is str


def apply_tool_parser(
    parser: Any, results: Sequence[LLMResult], choices: Sequence[Choice], tools: Any
) -> None:
    """Replace each result's messages with what ``parser`` makes of its choice (or its text)."""
    takes_text = _takes_text(parser)
    for result, choice in zip(results, choices, strict=False):
        argument = (result.text or "") if takes_text else litellm_choice(choice)
        try:
            parsed = parser(argument, tools)
        except ValidationError as exc:
            raise aviary_core().MalformedMessageError(
                f"tool_parser could not parse {result.model}: {exc}"
            ) from exc
        result.messages = list(parsed) if isinstance(parsed, list | tuple) else [parsed]


async def validate_responses(validator: Any, results: Sequence[LLMResult]) -> None:
    """Run ``LLMConfig.response_validator`` on each result; whatever it raises is retried as invalid."""
    for result in results:
        try:
            outcome = validator(result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            raise ResponseValidationError(f"response_validator rejected {result.model}: {exc}") from exc
