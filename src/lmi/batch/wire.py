"""Request bodies and answers in the two batch wire formats.

A batch item is one chat request written out in the provider's own format: OpenAI's chat-completions body
(one line of the uploaded JSONL file) or Anthropic's Messages ``params``. Answers come back in the same
formats and are reduced here to the provider-neutral :class:`~lmi.llms.results.Completion` every other
path produces, so results are built by the one function that builds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lmi.llms.results import Choice, Completion, completion_from_response
from lmi.types import TokenUsage

# Keys of a litellm deployment or call that configure the client, not the request body.
CLIENT_KEYS = frozenset(
    {
        "api_base", "api_key", "api_version", "base_url", "custom_llm_provider", "drop_params",
        "extra_headers", "headers", "max_retries", "metadata", "num_retries", "organization", "timeout",
        "transport", "max_connections", "stream", "stream_options",
    }
)  # fmt: skip
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; litellm sends this when none is given
# Chat parameters the Messages API takes as they are.
_ANTHROPIC_PASSTHROUGH = frozenset({"temperature", "top_p", "top_k", "thinking", "service_tier"})
_ANTHROPIC_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def provider_model(model: str, provider: str) -> str:
    """The model name the provider knows: litellm's ``openai/`` or ``anthropic/`` prefix removed."""
    prefix = f"{provider}/"
    return model[len(prefix) :] if model.startswith(prefix) else model


def openai_body(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One ``/v1/chat/completions`` request body."""
    body: dict[str, Any] = {"model": provider_model(model, "openai"), "messages": messages}
    for key, value in params.items():
        if key == "extra_body" and isinstance(value, Mapping):
            body.update(value)
        elif key not in CLIENT_KEYS and key != "model" and value is not None:
            body[key] = value
    return body


def anthropic_body(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One Messages API ``params`` object, from an OpenAI-style chat request."""
    system, turns = _anthropic_messages(messages)
    body: dict[str, Any] = {"model": provider_model(model, "anthropic"), "messages": turns}
    if system:
        body["system"] = system
    max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
    body["max_tokens"] = ANTHROPIC_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    unsupported = []
    for key, value in params.items():
        if key in CLIENT_KEYS or key in {"model", "max_tokens", "max_completion_tokens"} or value is None:
            continue
        if key in _ANTHROPIC_PASSTHROUGH:
            body[key] = value
        elif key == "stop":
            body["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif key == "n":
            if value != 1:
                raise ValueError(f"Anthropic returns one completion per request; n={value} is not possible")
        elif key == "tools":
            body["tools"] = [_anthropic_tool(tool) for tool in value]
        elif key == "tool_choice":
            body["tool_choice"] = _anthropic_tool_choice(value)
        elif key == "response_format":
            if value.get("type") != "json_object":
                raise ValueError(
                    "Anthropic batches take output_type as a pydantic model (JSON in the prompt), "
                    "not a strict JSON schema"
                )
            # JSON mode has no Anthropic switch: the schema is already in the system prompt.
        elif key == "extra_body" and isinstance(value, Mapping):
            body.update(value)
        else:
            unsupported.append(key)
    if unsupported:
        raise ValueError(f"Anthropic's Messages API does not take {', '.join(sorted(unsupported))}")
    if body.get("tool_choice", {}).get("type") == "none":
        body.pop("tools", None)
        body.pop("tool_choice")
    return body


def _anthropic_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    converted = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _anthropic_tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, Mapping):
        return {"type": "tool", "name": choice["function"]["name"]}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}


def _anthropic_messages(messages: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """System blocks and user/assistant turns; consecutive turns of one role are merged, as required."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            system.extend(_blocks(message.get("content")))
            continue
        if role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": _blocks(message.get("content")) or "",
            }
            blocks, role = [block], "user"
        else:
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or ():
                function = call["function"]
                arguments = function.get("arguments") or {}
                if isinstance(arguments, str):
                    arguments = json.loads(arguments) if arguments.strip() else {}
                blocks.append(
                    {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}
                )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if system and all(set(block) == {"type", "text"} for block in system):
        return "\n".join(block["text"] for block in system), turns
    return system, turns


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        if part.get("type") == "image_url":
            image = part["image_url"]
            url = image["url"] if isinstance(image, Mapping) else image
            block = {"type": "image", "source": _image_source(url)}
        else:
            block = {key: value for key, value in part.items()}
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        return {"type": "base64", "media_type": header[5:].split(";")[0], "data": data}
    return {"type": "url", "url": url}


class _Fields(dict[str, Any]):
    """A JSON object read by attribute, as litellm's response objects are."""

    __getattr__ = dict.get


def _fields(value: Any) -> Any:
    if isinstance(value, dict):
        return _Fields({key: _fields(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_fields(item) for item in value]
    return value


def openai_completion(body: Mapping[str, Any]) -> Completion:
    """A ``chat.completion`` object (an OpenAI batch output line's ``response.body``) as a Completion."""
    return completion_from_response(_fields(dict(body)))


def anthropic_completion(message: Mapping[str, Any]) -> Completion:
    """A Messages API ``message`` object (a batch result's ``result.message``) as a Completion."""
    texts, calls, thinking = [], [], []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append({"id": block.get("id"), "name": block.get("name"), "arguments": arguments})
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
    stop = message.get("stop_reason")
    choice = Choice(
        text="".join(texts) if texts or not calls else None,
        tool_calls=calls,
        reasoning_content="".join(thinking) if thinking else None,
        finish_reason=_ANTHROPIC_STOP_REASONS.get(stop, stop) if isinstance(stop, str) else None,
    )
    usage = message.get("usage")
    token_usage = None
    if usage:
        cache_read = usage.get("cache_read_input_tokens") or 0
        cache_creation = usage.get("cache_creation_input_tokens") or 0
        token_usage = TokenUsage(
            prompt_tokens=(usage.get("input_tokens") or 0) + cache_read + cache_creation,
            completion_tokens=usage.get("output_tokens") or 0,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
        )
    return Completion(
        choices=[choice],
        usage=token_usage,
        response_model=message.get("model"),
        response_id=message.get("id"),
    )
