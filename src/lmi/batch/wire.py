"""Batch items in the two wire formats, through the native transport's codecs.

A batch item is one chat request written out exactly as the native transport would send it on its own:
OpenAI's chat-completions body (one line of the uploaded JSONL file) or Anthropic's Messages ``params``.
Answers come back in the same formats and are read by the same codecs, so a batch result is built from
the same :class:`~lmi.llms.results.Completion` a direct call gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmi.llms.results import Completion
from lmi.llms.transports import anthropic, openai
from lmi.llms.transports.wire import Unsupported

# Deployment or call settings that shape the client or the run, never a batch line's body.
_NOT_IN_BODY = frozenset(
    {"stream", "stream_options", "timeout", "max_retries", "num_retries", "transport", "max_connections"}
)


def _request(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    request = {key: value for key, value in params.items() if key not in _NOT_IN_BODY}
    return {**request, "model": model, "messages": messages}


def openai_body(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One ``/v1/chat/completions`` request body."""
    try:
        _, body = openai.chat_request(_request(model, messages, params))
    except Unsupported as exc:
        raise ValueError(f"a batch cannot send {exc}") from None
    return body


def anthropic_body(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One Messages API ``params`` object, from an OpenAI-style chat request."""
    request = _request(model, messages, params)
    response_format = request.pop("response_format", None)
    if response_format is not None and response_format.get("type") != "json_object":
        raise ValueError(
            "Anthropic batches take output_type as a pydantic model (JSON asked for in the prompt), "
            "not a strict JSON schema"
        )  # JSON mode has no Anthropic switch: the schema is already in the system prompt
    if request.get("n", 1) != 1:
        raise ValueError(f"Anthropic returns one completion per request; n={request['n']} is not possible")
    try:
        _, body = anthropic.chat_request(request)
    except Unsupported as exc:
        raise ValueError(f"Anthropic's Messages API does not take {exc}") from None
    return body


def openai_completion(body: Mapping[str, Any]) -> Completion:
    """A ``chat.completion`` object (an OpenAI batch output line's ``response.body``) as a Completion."""
    return openai.completion(dict(body))


def anthropic_completion(message: Mapping[str, Any]) -> Completion:
    """A Messages API ``message`` object (a batch result's ``result.message``) as a Completion."""
    return anthropic.completion(dict(message))
