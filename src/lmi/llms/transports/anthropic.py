"""The Anthropic Messages wire format: OpenAI-shaped requests in, Completions out.

Requests arrive in litellm's (OpenAI) shape and are translated as litellm translates them: system
messages become ``system`` blocks, text becomes text blocks, ``image_url`` parts become image blocks,
assistant tool calls become ``tool_use`` blocks and tool messages ``tool_result`` blocks in a user turn,
``cache_control`` is kept where the caller put it. Anything litellm would rewrite in ways this module
does not (``response_format``, ``reasoning_effort``, ``n`` > 1, ...) raises :class:`Unsupported`, which
sends the call through litellm. Nothing here does I/O.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from lmi.llms.results import Choice, Completion
from lmi.llms.transports.wire import Endpoint, ErrorBody, Unsupported, split_request
from lmi.types import TokenUsage

DEFAULT_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
BODY_KEYS = frozenset(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
        "stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "thinking",
        "user", "metadata", "n",
    }
)  # fmt: skip
# Anthropic's stop reasons in OpenAI's terms, as litellm maps them.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def model_name(model: str) -> str:
    return model.removeprefix("anthropic/")


def _endpoint(transport: dict[str, Any]) -> Endpoint:
    base = str(
        transport.get("api_base")
        or transport.get("base_url")
        or os.environ.get("ANTHROPIC_API_BASE")
        or os.environ.get("ANTHROPIC_BASE_URL")
        or DEFAULT_BASE
    ).rstrip("/")
    url = base if base.endswith("/v1/messages") else base + "/v1/messages"
    headers = {
        "anthropic-version": API_VERSION,
        "accept": "application/json",
        "content-type": "application/json",
    }
    key = transport.get("api_key") or os.environ.get("ANTHROPIC_API_KEY")
    if key:
        headers["x-api-key"] = key
    for extra in ("headers", "extra_headers"):
        headers.update({k.lower(): v for k, v in (transport.get(extra) or {}).items()})
    return Endpoint(url=url, headers=headers, provider="anthropic")


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            image = part["image_url"]
            block = _image(image["url"] if isinstance(image, dict) else image)
        else:
            raise Unsupported(f"content part of type {kind!r}")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    arguments = function.get("arguments") or "{}"
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": json.loads(arguments) if isinstance(arguments, str) else arguments,
    }


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    result["content"] = content if isinstance(content, str) else _blocks(content)
    return result


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): consecutive turns of one role merged, as Anthropic requires.

    litellm rewrites a few shapes Anthropic would refuse (a system message after the conversation
    started, an empty text, no message besides the system prompt); those stay litellm's.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if message.get("content") == "":
            raise Unsupported("an empty message (litellm rewrites it)")
        if role == "system":
            if turns:
                raise Unsupported("a system message after the conversation started (litellm rewrites it)")
            system.extend(_blocks(message.get("content")))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            blocks.extend(_tool_use(call) for call in message.get("tool_calls") or ())
        elif role == "user":
            blocks = _blocks(message.get("content"))
        else:
            raise Unsupported(f"message role {role!r}")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


# A conversation holding tool calls needs tools declared; litellm declares this one when none are given.
DUMMY_TOOL = {
    "name": "dummy_tool",
    "description": "This is a dummy tool call",
    "input_schema": {"type": "object", "properties": {}},
    "type": "custom",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")  # Anthropic's rule; litellm rewrites other names


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise Unsupported(f"tool of type {tool.get('type')!r}")
        function = tool["function"]
        if not _TOOL_NAME.match(str(function.get("name"))):
            raise Unsupported(
                f"tool name {function.get('name')!r} (Anthropic refuses it; litellm renames it)"
            )
        entry: dict[str, Any] = {"name": function["name"], "type": "custom"}  # as litellm sends it
        if function.get("description"):
            entry["description"] = function["description"]
        entry["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        converted.append(entry)
    return converted


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    raise Unsupported(f"tool_choice {choice!r}")


def chat_request(request: dict[str, Any]) -> tuple[Endpoint, dict[str, Any]]:
    """The endpoint and JSON body for a Messages call; :class:`Unsupported` when litellm must do it."""
    params, transport = split_request(request, BODY_KEYS)
    if params.pop("n", 1) != 1:
        raise Unsupported("n > 1 (Anthropic has no n)")
    system, messages = _messages(params["messages"])
    if params["messages"] and not messages:
        raise Unsupported("only a system message (litellm refuses it)")
    model = model_name(str(params["model"]))
    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        body["system"] = system
    max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
    body["max_tokens"] = default_max_tokens(model) if max_tokens is None else max_tokens
    for key in ("temperature", "top_p", "top_k", "thinking", "metadata"):
        if key in params:
            body[key] = params[key]
    if "stop" in params:
        stop = params["stop"]
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if "user" in params:
        body.setdefault("metadata", {})["user_id"] = params["user"]
    if params.get("tools"):
        body["tools"] = _tools(params["tools"])
    elif any(message.get("tool_calls") for message in params["messages"]):
        body["tools"] = [DUMMY_TOOL]
    if "tool_choice" in params and params.get("tools"):
        body["tool_choice"] = _tool_choice(params["tool_choice"])
    if params.get("parallel_tool_calls") is False and params.get("tools"):
        body.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True
    if params.get("stream"):
        body["stream"] = True
    return _endpoint(transport), body


def default_max_tokens(model: str) -> int:
    """What litellm sends when the caller sets no limit: the model's output maximum from its model map."""
    from lmi._model_map import model_map

    for key in (model, f"anthropic/{model}"):
        entry = model_map().get(key)
        if isinstance(entry, dict):
            value = entry.get("max_output_tokens") or entry.get("max_tokens")
            if isinstance(value, int) and value > 0:
                return value
    return DEFAULT_MAX_TOKENS


def _reasoning_tokens(usage: dict[str, Any], reasoning: str | None, completion_tokens: int) -> int:
    """Thinking tokens: reported when Anthropic reports them, else counted as litellm counts them."""
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        return min(max(0, details["thinking_tokens"]), completion_tokens)
    if not reasoning:
        return 0
    from lmi._tokenizer import cl100k

    return max(0, min(len(cl100k().encode_ordinary(reasoning)), completion_tokens))


def _usage(usage: dict[str, Any] | None, reasoning: str | None) -> TokenUsage | None:
    """Anthropic's usage in lmi's convention (None when it reports nothing, as for litellm's)."""
    if not usage:
        return None
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_creation = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_creation
    output = usage.get("output_tokens") or 0
    if not prompt and not output:
        return None
    written = usage.get("cache_creation")
    searches = usage.get("server_tool_use")
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=_reasoning_tokens(usage, reasoning, output),
        cache_creation_1h_tokens=(written.get("ephemeral_1h_input_tokens") or 0)
        if isinstance(written, dict)
        else 0,
        web_search_requests=(searches.get("web_search_requests") or 0) if isinstance(searches, dict) else 0,
        service_tier=usage.get("service_tier"),
    )


def _choice(blocks: list[dict[str, Any]], stop_reason: str | None) -> Choice:
    texts, thinking, calls = [], [], []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            arguments = block.get("input")
            calls.append(
                {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                }
            )
    return Choice(
        text="".join(texts) if texts else None,
        tool_calls=calls,
        reasoning_content="".join(thinking) if thinking else None,
        finish_reason=FINISH_REASONS.get(stop_reason or "", stop_reason),
    )


def completion(body: Any) -> Completion:
    """A Messages JSON body as a :class:`Completion`; ValueError when it is not one."""
    if isinstance(body, dict) and body.get("type") == "error":
        raise ErrorBody(body.get("error"))
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise ValueError("the response has no 'content'")
    choice = _choice(body["content"], body.get("stop_reason"))
    return Completion(
        choices=[choice],
        usage=_usage(body.get("usage"), choice.reasoning_content),
        response_model=body.get("model"),
        response_id=body.get("id"),
    )


class ChatStream:
    """Messages stream events (already parsed JSON) into a :class:`Completion`."""

    __slots__ = ("_blocks", "_first_delta_at", "_json", "_message", "_stop_reason", "_stopped", "_usage")

    def __init__(self) -> None:
        self._first_delta_at: float | None = None  # text, thinking or tool input: the first token
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}  # tool input arrives as pieces of a JSON string
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stopped = False

    def add(self, event: str | None, data: Any) -> str:
        """Take one event's data; return the text it adds."""
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "content_block_delta":
            if self._first_delta_at is None:
                self._first_delta_at = time.perf_counter()
            delta = data["delta"]
            block = self._blocks.setdefault(data.get("index", 0), {"type": "text", "text": ""})
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta.get("text") or ""
                block.setdefault("parts", []).append(text)
                return text
            if delta_type == "thinking_delta":
                block.setdefault("parts", []).append(delta.get("thinking") or "")
            elif delta_type == "input_json_delta":
                self._json.setdefault(data.get("index", 0), []).append(delta.get("partial_json") or "")
        elif kind == "content_block_start":
            self._blocks[data.get("index", 0)] = dict(data["content_block"])
        elif kind == "message_start":
            self._message = data["message"]
            self._usage.update(self._message.get("usage") or {})
        elif kind == "message_delta":
            self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            raise ErrorBody(data.get("error"))
        return ""

    def finish(self) -> Completion:
        if not self._stopped:
            raise ValueError("the stream ended before message_stop")
        blocks = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            parts = "".join(block.pop("parts", ()))
            if block.get("type") == "text":
                block["text"] = (block.get("text") or "") + parts
            elif block.get("type") == "thinking":
                block["thinking"] = (block.get("thinking") or "") + parts
            elif block.get("type") == "tool_use" and index in self._json:
                block["input"] = "".join(self._json[index]) or "{}"
            blocks.append(block)
        choice = _choice(blocks, self._stop_reason)
        return Completion(
            choices=[choice],
            usage=_usage(self._usage, choice.reasoning_content),
            response_model=self._message.get("model"),
            response_id=self._message.get("id"),
            first_delta_at=self._first_delta_at,
        )
