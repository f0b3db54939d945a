"""The OpenAI Responses API (``ModelSpec.responses_api=True``): the request and the answer, as a Completion.

Messages become ``input`` items; a conversation continues a stored response when one of its messages
carries ``info["response_id"]`` (only the messages after it are sent, with ``previous_response_id``).
The answer is reduced to the same :class:`~lmi.llms.results.Completion` chat answers are, so results,
usage, cost and limits are handled in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lmi.llms.results import Choice, Completion, _get
from lmi.types import TokenUsage

MAX_CALL_ID = 64  # the Responses API refuses longer call ids
_TERMINAL_OK = "response.completed"
_TERMINAL_FAILED = ("response.failed", "response.incomplete", "error")


def split_for_chaining(messages: Sequence[Any]) -> tuple[str | None, list[Any]]:
    """``previous_response_id`` (from the last message whose ``info`` has one) and the messages after it."""
    for index in range(len(messages) - 1, -1, -1):
        info = getattr(messages[index], "info", None) or {}
        if info.get("response_id"):
            return str(info["response_id"]), list(messages[index + 1 :])
    return None, list(messages)


def _content(message: Any) -> Any:
    content = message.content
    if getattr(message, "content_is_json_str", False) and isinstance(content, str):
        blocks = json.loads(content)
        converted = []
        for block in blocks:
            if block.get("type") == "image_url":
                url = (
                    block["image_url"]["url"] if isinstance(block["image_url"], dict) else block["image_url"]
                )
                converted.append({"type": "input_image", "image_url": url})
            elif block.get("type") == "text":
                converted.append({"type": "input_text", "text": block["text"]})
            else:
                converted.append(block)
        return converted
    return content


def _call_ids(messages: Sequence[Any]) -> dict[str, str]:
    """Call ids over the API's limit, mapped to their SHA-256 (when both the call and its output are here)."""
    calls = {call.id for m in messages for call in getattr(m, "tool_calls", None) or ()}
    outputs = {m.tool_call_id for m in messages if getattr(m, "tool_call_id", None)}
    mapping = {}
    for call_id in calls | outputs:
        if len(call_id) <= MAX_CALL_ID:
            continue
        if call_id not in calls or call_id not in outputs:
            raise ValueError(
                f"Tool call id {call_id[:20]}... is longer than {MAX_CALL_ID} characters and its call or its "
                "output is missing from the messages, so it cannot be shortened consistently"
            )
        mapping[call_id] = hashlib.sha256(call_id.encode()).hexdigest()
    return mapping


def input_items(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """aviary messages as Responses API ``input`` items."""
    ids = _call_ids(messages)
    items: list[dict[str, Any]] = []
    for message in messages:
        if type(message) is dict:  # a plain role and text (see lmi.llms.base.normalize_messages)
            items.append({"type": "message", "role": message["role"], "content": message["content"]})
            continue
        tool_call_id = getattr(message, "tool_call_id", None)
        if tool_call_id:
            output = message.content if isinstance(message.content, str) else json.dumps(message.content)
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": ids.get(tool_call_id, tool_call_id),
                    "output": output,
                }
            )
            continue
        calls = getattr(message, "tool_calls", None) or ()
        if message.content or not calls:
            items.append({"type": "message", "role": message.role, "content": _content(message)})
        for call in calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": ids.get(call.id, call.id),
                    "name": call.function.name,
                    "arguments": json.dumps(call.function.arguments),
                }
            )
    return items


def flat_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions function tools in the Responses API's flat shape."""
    flat = []
    for tool in tools:
        function = tool.get("function", tool)
        flat.append(
            {
                "type": "function",
                "name": function["name"],
                "description": function.get("description", ""),
                "parameters": function.get("parameters", {}),
                "strict": False,
            }
        )
    return flat


def build_request(base: dict[str, Any], messages: Sequence[Any], stream: bool) -> dict[str, Any]:
    """The ``litellm.aresponses`` keyword arguments for a chat-shaped ``base`` request and ``messages``."""
    request = {k: v for k, v in base.items() if k not in ("messages", "stream_options", "n")}
    previous, to_send = split_for_chaining(messages)
    request["input"] = input_items(to_send)
    if previous is not None:
        request["previous_response_id"] = previous
    if request.get("tools"):
        request["tools"] = flat_tools(request["tools"])
    request.setdefault("store", True)
    if stream:
        request["stream"] = True
    return request


def _usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage(  # litellm may hand back the chat spelling (prompt_tokens...) in streams
        prompt_tokens=_get(usage, "input_tokens") or _get(usage, "prompt_tokens") or 0,
        completion_tokens=_get(usage, "output_tokens") or _get(usage, "completion_tokens") or 0,
        cache_read_tokens=_get(_get(usage, "input_tokens_details"), "cached_tokens") or 0,
        reasoning_tokens=_get(_get(usage, "output_tokens_details"), "reasoning_tokens") or 0,
    )


def completion_of(response: Any) -> Completion:
    """A Responses API answer as one choice: its output texts joined by newlines, and its function calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in _get(response, "output") or ():
        kind = _get(item, "type")
        if kind == "message":
            texts.extend(
                _get(part, "text") or ""
                for part in _get(item, "content") or ()
                if _get(part, "type") == "output_text"
            )
        elif kind == "function_call":
            calls.append(
                {
                    "id": _get(item, "call_id"),
                    "name": _get(item, "name"),
                    "arguments": _get(item, "arguments") or "{}",
                }
            )
    choice = Choice(text="\n".join(texts), tool_calls=calls)
    return Completion(
        [choice], _usage(_get(response, "usage")), _get(response, "model"), _get(response, "id")
    )


async def consume_stream(stream: Any, notify: Callable[[str], Awaitable[None]]) -> tuple[Any, bool]:
    """Feed every text delta to ``notify``; return the final response and whether any text was streamed."""
    streamed = False
    async for event in stream:
        kind = _get(event, "type") or ""
        kind = str(getattr(kind, "value", kind))  # litellm's str-enum of event types
        if kind == "response.output_text.delta":
            delta = _get(event, "delta") or ""
            if delta:
                streamed = True
                await notify(delta)
        elif kind == _TERMINAL_OK:
            return _get(event, "response"), streamed
        elif kind in _TERMINAL_FAILED:
            error = _get(_get(event, "response"), "error") or _get(event, "message") or kind
            raise RuntimeError(f"Responses API stream ended with {kind}: {error}")
    raise RuntimeError("Responses API stream ended without a response.completed event")


def stamp_results(results: Sequence[Any], response_id: str | None) -> None:
    """Each result and its messages carry the response id, so the next call can continue from it."""
    for result in results:
        result.response_id = response_id
        result.finish_reason = None
        for message in result.messages or ():
            message.info = {**(message.info or {}), "response_id": response_id}
