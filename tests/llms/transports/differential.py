"""Replaying one recorded exchange through both transports and comparing what each produced."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aviary.core import Message, ToolCall, ToolCallFunction, ToolRequestMessage, ToolResponseMessage

from lmi import LiteLLMModel, LLMResult
from tests.replay import RECORDINGS, ReplayServer, load_recording

# Request keys the caller does not pass: the transports set them.
_SET_BY_TRANSPORT = {"model", "messages", "stream", "stream_options", "system"}
# Result fields that differ between any two calls (ids, clocks) or hold the prompt we passed.
_VOLATILE = {"id", "date", "seconds_to_first_token", "seconds_to_last_token", "prompt", "session_id"}


@dataclass(frozen=True)
class Case:
    recording: str
    index: int
    path: str

    def __str__(self) -> str:
        return f"{self.recording}[{self.index}]"

    @property
    def exchange(self) -> dict[str, Any]:
        return load_recording(self.recording)[self.index]

    @property
    def streamed(self) -> bool:
        return bool(self.exchange["request"].get("stream"))


def cases(path: str) -> list[Case]:
    """Every successful recorded exchange on ``path`` (e.g. ``/v1/chat/completions``)."""
    found = []
    for file in sorted(RECORDINGS.glob("*.json")):
        for index, exchange in enumerate(load_recording(file.stem)):
            if exchange["path"] == path and exchange["status"] == 200:
                found.append(Case(file.stem, index, path))
    return found


def _tool_request(message: dict[str, Any]) -> ToolRequestMessage:
    calls = [
        ToolCall(
            id=call["id"],
            function=ToolCallFunction(
                name=call["function"]["name"], arguments=json.loads(call["function"]["arguments"])
            ),
        )
        for call in message["tool_calls"]
    ]
    return ToolRequestMessage(content=message.get("content"), tool_calls=calls)


def openai_messages(messages: list[dict[str, Any]]) -> list[Message]:
    """Recorded OpenAI messages as the aviary messages that produce them."""
    converted: list[Message] = []
    for message in messages:
        if message.get("tool_calls"):
            converted.append(_tool_request(message))
        elif message["role"] == "tool":
            converted.append(
                ToolResponseMessage(
                    content=message["content"], name=message["name"], tool_call_id=message["tool_call_id"]
                )
            )
        else:
            converted.append(Message(role=message["role"], content=message["content"]))
    return converted


def _anthropic_content(content: Any) -> tuple[Any, bool]:
    """Anthropic content blocks as OpenAI content, and whether a block carried a cache breakpoint."""
    if isinstance(content, str):
        return content, False
    cached = any("cache_control" in block for block in content)
    if all(block["type"] == "text" for block in content) and len(content) == 1:
        return content[0]["text"], cached
    blocks = []
    for block in content:
        if block["type"] == "text":
            blocks.append({"type": "text", "text": block["text"]})
        elif block["type"] == "image":
            source = block["source"]
            url = f"data:{source['media_type']};base64,{source['data']}"
            blocks.append({"type": "image_url", "image_url": {"url": url}})
    return blocks, cached


def anthropic_messages(request: dict[str, Any]) -> list[Message]:
    """A recorded Anthropic request's system and messages as aviary messages."""
    converted: list[Message] = []
    system = request.get("system")
    if system:
        content, cached = _anthropic_content(system)
        converted.append(Message(role="system", content=content, cache_breakpoint=cached))
    for message in request["messages"]:
        content, cached = _anthropic_content(message["content"])
        converted.append(Message(role=message["role"], content=content, cache_breakpoint=cached))
    return converted


def call_kwargs(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k not in _SET_BY_TRANSPORT}


def comparable(result: LLMResult) -> dict[str, Any]:
    data = result.model_dump(exclude=_VOLATILE)
    data["messages"] = [m.model_dump() for m in result.messages]
    return data


async def run(
    replay: ReplayServer,
    case: Case,
    transport: str,
    model: str,
    base: str,
    messages: list[Message],
    **config: Any,
) -> tuple[list[LLMResult], list[str], dict[str, Any], dict[str, str]]:
    """Results, streamed deltas, and the body and headers the server received, for one transport
    (and more of the model's ``config``)."""
    replay.clear()
    params = {"model": model, "api_base": base}
    llm = LiteLLMModel(
        name=model,
        config={
            "model_list": [{"model_name": model, "litellm_params": params}],
            "transport": transport,
            **config,
        },
    )
    request = case.exchange["request"]
    kwargs = call_kwargs(request)
    deltas: list[str] = []
    if case.streamed:
        kwargs.pop("n", None)
        results = [r async for r in llm.acompletion_iter(messages, callbacks=[deltas.append], **kwargs)]
    else:
        results = await llm.acompletion(messages, **kwargs)
    (received,) = replay.requests_for(case.recording)
    return results, deltas, received.body, received.headers
