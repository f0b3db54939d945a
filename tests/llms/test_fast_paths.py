"""The shortcuts taken on the hot path give exactly what the slow, obvious code gives."""

from __future__ import annotations

from typing import Any

import pytest
from aviary.core import Message, ToolCall, ToolCallFunction, ToolRequestMessage, ToolResponseMessage

from lmi._lazy import litellm
from lmi.llms.litellm_model import _message_dict
from lmi.llms.results import _get
from tests.llms.helpers import recorded
from tests.replay import ReplayServer

MESSAGES = [
    Message(content="hi"),
    Message(role="system", content="Be brief."),
    Message(role="assistant", content=None),
    Message(content="", info={"note": "kept out of the request"}),
    Message(content=[{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]),
    Message(content={"not": "multimodal"}),
    Message(content="cached", cache_breakpoint=True),
    ToolRequestMessage(tool_calls=[ToolCall(id="1", function=ToolCallFunction(name="f", arguments={}))]),
    ToolResponseMessage(content="42", name="f", tool_call_id="1"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}:{m.content!r}"[:40])
def test_message_dict_equals_model_dump(message: Message) -> None:
    expected = message.model_dump(by_alias=True, exclude_none=True)
    expected.pop("info", None)
    assert _message_dict(message) == expected


KEYS = ["choices", "message", "content", "tool_calls", "reasoning_content", "finish_reason", "logprobs",
        "usage", "model", "id", "prompt_tokens_details", "completion_tokens_details", "cached_tokens",
        "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation_tokens",
        "reasoning_tokens", "prompt_tokens", "completion_tokens", "delta", "index", "function", "name",
        "arguments", "not_a_field", "model_dump", "json"]  # fmt: skip


def _walk(obj: Any, seen: set[int]) -> list[Any]:
    if id(obj) in seen or obj is None or isinstance(obj, str | int | float | bool):
        return []
    seen.add(id(obj))
    found = [obj]
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else None
    if children is None:
        children = [getattr(obj, key, None) for key in KEYS if key not in {"model_dump", "json"}]
    for child in children:
        found.extend(_walk(child, seen))
    return found


CASES = [
    ("openai-chat-634cf7", "gpt-4o-mini", False),
    ("openai-chat-reasoning-4b12ec", "o3-mini", False),
    ("anthropic-messages-cache-1feb77", "anthropic/claude-sonnet-4-5-20250929", False),
    ("openai-chat-stream-29f559", "gpt-4o-mini", True),
    ("anthropic-messages-stream-cache-237cb0", "anthropic/claude-sonnet-4-5-20250929", True),
]


@pytest.mark.parametrize(("recording", "model", "stream"), CASES)
async def test_get_equals_getattr_on_litellm_objects(
    replay: ReplayServer, recording: str, model: str, stream: bool
) -> None:
    request = recorded(recording)["request"]
    base = (
        replay.anthropic_base(recording) if model.startswith("anthropic/") else replay.openai_base(recording)
    )
    params: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    response = await litellm().acompletion(
        model=model,
        api_base=base,
        messages=request["messages"],
        max_retries=0,
        max_tokens=request.get("max_tokens", 64),
        **params,
    )
    responses = [chunk async for chunk in response] if stream else [response]
    objects = [obj for item in responses for obj in _walk(item, set())]
    assert len(objects) > 5
    for obj in objects:
        for key in KEYS:
            expected = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
            assert _get(obj, key) == expected, (type(obj).__name__, key)
