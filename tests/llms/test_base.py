"""LLMModel's provider-free half, through a subclass written the way the README describes."""

from __future__ import annotations

import asyncio
import functools
import gc
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aviary.core import Message
from pydantic import BaseModel, Field

from lmi import JSONSchemaValidationError, LiteLLMModel, LLMModel, LLMResult
from tests.llms.helpers import openai_model, recorded, sse_events
from tests.replay import ReplayServer


class EchoModel(LLMModel):
    """Answers with the last message's text (or a fixed reply), streaming it word by word."""

    name: str = "echo"
    reply: str | None = None
    seen: list[dict[str, Any]] = Field(default_factory=list)

    async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
        self.seen.append({"messages": messages, **kwargs})
        text = self.reply if self.reply is not None else messages[-1].content
        return [LLMResult(model=self.name, text=text) for _ in range(kwargs.get("n", 1))]

    async def acompletion_iter(self, messages: list[Message], **kwargs: Any) -> AsyncIterator[LLMResult]:
        callbacks = kwargs.pop("callbacks", None) or []
        self.seen.append({"messages": messages, **kwargs})
        text = self.reply if self.reply is not None else str(messages[-1].content)
        for word in text.split(" "):
            for callback in callbacks:
                out = callback(word + " ")
                if hasattr(out, "__await__"):
                    await out
        yield LLMResult(model=self.name, text=text)


async def test_plain_string_becomes_one_user_message() -> None:
    llm = EchoModel()
    result = await llm.call_single("hello there")
    assert result.text == "hello there"
    (message,) = llm.seen[0]["messages"]
    assert (message.role, message.content) == ("user", "hello there")
    assert llm.seen[0]["n"] == 1


async def test_dict_messages_accepted_and_bad_items_named() -> None:
    llm = EchoModel()
    result = await llm.call_single([{"role": "user", "content": "hi"}])
    assert result.text == "hi"
    with pytest.raises(TypeError, match=r"messages\[1\]"):
        await llm.call([Message(content="a"), 42])  # type: ignore[list-item]


async def test_callbacks_reach_a_subclass_that_only_takes_kwargs() -> None:
    llm = EchoModel()
    words: list[str] = []

    async def collect(delta: str) -> None:
        words.append(delta)

    result = await llm.call_single("one two three", callbacks=[collect])
    assert words == ["one ", "two ", "three "]
    assert result.text == "one two three"


class Answer(BaseModel):
    value: int


async def test_output_type_validated_with_fences_tolerated() -> None:
    llm = EchoModel(reply='```json\n{"value": 3}\n```')
    result = await llm.call_single("q", output_type=Answer)
    assert result.text.startswith("```")
    sent = llm.seen[0]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0].role == "system"
    assert '"value"' in sent["messages"][0].content

    bad = EchoModel(reply='{"value": "three"}')
    with pytest.raises(JSONSchemaValidationError) as info:
        await bad.call_single("q", output_type=Answer)
    assert info.value.text == '{"value": "three"}'


async def test_n_completions() -> None:
    results = await EchoModel().call("x", n=3)
    assert [r.text for r in results] == ["x", "x", "x"]


def test_tool_choice_validation_is_eager() -> None:
    from aviary.core import Tool

    from lmi.llms.base import tools_request

    def noop() -> None:
        """Do nothing."""

    tool = Tool.from_function(noop)
    with pytest.raises(ValueError, match="sometimes"):
        tools_request([tool], "sometimes")
    assert tools_request([tool], None) == {"tools": [tool.model_dump(exclude_none=True, by_alias=True)]}


# -- callbacks and n, through a real model against the recorded stream ----------------------------------

STREAM = "openai-chat-stream-29f559"  # "Say hello", streamed in 13 events


def _streamed_text() -> str:
    events = sse_events(recorded(STREAM))
    return "".join(choice["delta"].get("content") or "" for event in events for choice in event["choices"])


class _Collector:
    """A callable object whose ``__call__`` is a plain method returning a coroutine."""

    def __init__(self) -> None:
        self.deltas: list[str] = []

    def __call__(self, delta: str) -> Any:
        async def keep() -> None:
            await asyncio.sleep(0)
            self.deltas.append(delta)

        return keep()


async def test_callbacks_returning_awaitables_are_awaited(replay: ReplayServer) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    collector = _Collector()
    partial_deltas: list[str] = []

    async def append(target: list[str], delta: str) -> None:
        target.append(delta)

    llm = openai_model(replay, STREAM)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await llm.call_single(
            "Say hello",
            callbacks=[lambda delta: queue.put(delta), collector, functools.partial(append, partial_deltas)],
        )
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert not [w for w in caught if "never awaited" in str(w.message)]
    received = [queue.get_nowait() for _ in range(queue.qsize())]
    assert result.text == _streamed_text()
    assert "".join(received) == result.text
    assert len(received) > 1  # every delta, not one final text
    assert collector.deltas == received
    assert partial_deltas == received


@pytest.mark.parametrize("where", ["flat", "model_list", "fallback"])
async def test_n_from_the_config_with_callbacks_is_refused_before_sending(
    replay: ReplayServer, where: str
) -> None:
    base = replay.openai_base(STREAM)
    if where == "flat":
        llm = LiteLLMModel(config={"name": "gpt-4o-mini", "api_base": base, "n": 3})
    else:
        params = {"model": "gpt-4o-mini", "api_base": base}
        primary_n = {"n": 3} if where == "model_list" else {}
        backup_n = {"n": 2} if where == "fallback" else {}
        config = {
            "model_list": [
                {"model_name": "a", "litellm_params": {**params, **primary_n}},
                {"model_name": "b", "litellm_params": {**params, **backup_n}},
            ],
            "fallbacks": [{"a": ["b"]}],
        }
        llm = LiteLLMModel(name="a", config=config)
    with pytest.raises(ValueError, match=r"n=[23]"):
        await llm.call("Say hello", callbacks=[lambda _: None])
    with pytest.raises(ValueError, match=r"n=[23]"):  # the streaming entry point itself refuses too
        await anext(llm.acompletion_iter([Message(content="Say hello")], callbacks=[lambda _: None]))
    assert replay.requests_for(STREAM) == []
    # n=1 from the call overrides the config's, so the stream goes out with n=1
    result = await llm.call_single("Say hello", callbacks=[lambda _: None])
    assert result.text == _streamed_text()
    assert [request.body.get("n") for request in replay.requests_for(STREAM)] == [1]
