"""The OpenAI chat-completions and embeddings wire format: request bodies in, Completions out.

A request arrives in litellm's shape (``model``, ``messages``, completion parameters, ``api_base``,
``api_key``, ...), so both transports take the same input. Nothing here does I/O.
"""

from __future__ import annotations

import os
from typing import Any

from lmi.llms.results import Choice, Completion, StreamAssembler, top_logprobs_of, usage_from_litellm
from lmi.llms.transports.wire import Endpoint, ErrorBody, Unsupported, split_request

DEFAULT_BASE = "https://api.openai.com/v1"
# OpenAI's own reasoning models refuse ``max_tokens``; litellm renames it, and so do we.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# Parameters the chat-completions API takes in the body, sent as given. Anything else (a parameter of
# another provider, or one litellm rewrites) sends the call through litellm instead.
CHAT_PARAMS = frozenset(
    {
        "audio", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens",
        "messages", "metadata", "modalities", "model", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format",
        "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
        "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    }
)  # fmt: skip
EMBEDDING_PARAMS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def _endpoint(transport: dict[str, Any], path: str) -> Endpoint:
    base = (
        transport.get("api_base")
        or transport.get("base_url")
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or DEFAULT_BASE
    )
    key = transport.get("api_key") or os.environ.get("OPENAI_API_KEY")
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    organization = transport.get("organization") or os.environ.get("OPENAI_ORGANIZATION")
    if organization:
        headers["openai-organization"] = organization
    for extra in ("headers", "extra_headers"):
        headers.update({k.lower(): v for k, v in (transport.get(extra) or {}).items()})
    return Endpoint(url=str(base).rstrip("/") + path, headers=headers, provider="openai")


def model_name(model: str) -> str:
    return model.removeprefix("openai/")


def chat_request(request: dict[str, Any]) -> tuple[Endpoint, dict[str, Any]]:
    """The endpoint and JSON body for a chat completion; :class:`Unsupported` when litellm must do it."""
    body, transport = split_request(request, CHAT_PARAMS)
    body["model"] = model = model_name(str(body["model"]))
    if model.startswith(_REASONING_PREFIXES):
        if "max_tokens" in body:
            body.setdefault("max_completion_tokens", body.pop("max_tokens"))
        if body.get("temperature", 1) != 1:  # litellm refuses it for these models, with its own error
            raise Unsupported(f"temperature={body['temperature']} for {model}")
    if not body.get("stream"):
        body.pop("stream", None)
        body.pop("stream_options", None)
    return _endpoint(transport, "/chat/completions"), body


def embedding_request(request: dict[str, Any]) -> tuple[Endpoint, dict[str, Any]]:
    body, transport = split_request(request, EMBEDDING_PARAMS)
    body["model"] = model_name(str(body["model"]))
    return _endpoint(transport, "/embeddings"), body


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": call.get("id"),
        "name": function.get("name"),
        "arguments": function.get("arguments") or "{}",
    }


def _logprob(logprobs: Any) -> float | None:
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    return sum(token.get("logprob") or 0.0 for token in content)


def completion(body: Any) -> Completion:
    """A chat-completions JSON body as a :class:`Completion`; ValueError when it is not one."""
    if isinstance(body, dict) and "error" in body and "choices" not in body:
        raise ErrorBody(body["error"])
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ValueError("the response has no 'choices'")
    choices = []
    for position, choice in enumerate(body["choices"]):
        message = choice.get("message") or {}
        index = choice.get("index")
        choices.append(
            Choice(
                index=index if isinstance(index, int) and not isinstance(index, bool) else position,
                text=message.get("content"),
                tool_calls=[_tool_call(call) for call in message.get("tool_calls") or ()],
                reasoning_content=message.get("reasoning_content"),
                finish_reason=choice.get("finish_reason"),
                logprob=_logprob(logprobs := choice.get("logprobs")),
                top_logprobs=top_logprobs_of(logprobs),
            )
        )
    choices.sort(key=lambda choice: choice.index)  # a server may send them in any order
    return Completion(
        choices=choices,
        usage=usage_from_litellm(body.get("usage"), body.get("service_tier")),
        response_model=body.get("model"),
        response_id=body.get("id"),
    )


class ChatStream:
    """Server-sent chat-completion chunks (already parsed JSON) into a :class:`Completion`."""

    __slots__ = ("_assembler",)

    def __init__(self) -> None:
        self._assembler = StreamAssembler()

    def add(self, event: str | None, data: Any) -> str:
        """Take one event's data; return the text it adds to the first choice."""
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            raise ErrorBody(data["error"])
        return self._assembler.add(data)

    def finish(self) -> Completion:
        completion = self._assembler.finish()
        if not any(choice.finish_reason for choice in completion.choices):
            raise ValueError("the stream ended before the completion finished (no finish_reason)")
        return completion


def embeddings(body: Any) -> tuple[list[Any], int | None]:
    """The response's ``data`` items (each with its ``index`` and ``embedding``, floats or base64) and the
    billed prompt tokens, if given; placing them by index is the embedding model's, which checks it."""
    if isinstance(body, dict) and "error" in body and "data" not in body:
        raise ErrorBody(body["error"])
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("the response has no 'data'")
    usage = body.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return body["data"], tokens if isinstance(tokens, int) else None


def speaks_embeddings(name: str, kwargs: Any) -> bool:
    """Whether litellm would send embedding model ``name`` over OpenAI's embeddings API."""
    provider = kwargs.get("custom_llm_provider")
    if provider is None and "/" in name:
        provider = name.split("/", 1)[0]
    if provider is not None:
        return bool(provider == "openai")
    return name.startswith("text-embedding-")


__all__ = ["Unsupported", "chat_request", "completion", "embedding_request", "embeddings"]
