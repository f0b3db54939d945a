"""call()/call_single() as fhlmi code uses them: names, empty tools, streaming limits, TypeAdapter, errors."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Any

import litellm
import pytest
from aviary.core import Message, ToolRequestMessage
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from lmi import AllModelsExhaustedError, LiteLLMModel, LLMModel, LLMResult
from lmi.exceptions import ModelCallError
from tests.llms.helpers import openai_model, recorded
from tests.replay import Fault, ReplayServer

QUESTION = "What is the meaning of life?"
PLAIN = "openai-chat-634cf7"


class TwoAnswers(LLMModel):
    """A model that ignores n and always answers twice."""

    name: str = "two"

    async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
        return [LLMResult(model=self.name, text="first"), LLMResult(model=self.name, text="second")]

    async def acompletion_iter(self, messages: list[Message], **kwargs: Any) -> AsyncIterator[LLMResult]:
        yield LLMResult(model=self.name, text="first")


class DummyOutputSchema(BaseModel):
    name: str
    age: int = Field(description="Age in years.")


def test_tool_choice_constants_and_str() -> None:
    for cls in (LLMModel, LiteLLMModel):
        assert (cls.NO_TOOL_CHOICE, cls.MODEL_CHOOSES_TOOL, cls.TOOL_CHOICE_REQUIRED) == (
            "none",
            "auto",
            "required",
        )
        assert cls.UNSPECIFIED_TOOL_CHOICE is None
    assert str(TwoAnswers()) == "TwoAnswers two"


async def test_call_single_with_several_results_warns_and_returns_the_first() -> None:
    with pytest.warns(UserWarning, match="got 2"):
        result = await TwoAnswers().call_single("hi")
    assert result.text == "first"


async def test_name_labels_results_and_is_not_sent(replay: ReplayServer) -> None:
    llm = openai_model(replay, PLAIN)
    results = await llm.call([Message(content=QUESTION)], name="my-label")
    assert [r.name for r in results] == ["my-label"]
    assert "name" not in replay.requests_for(PLAIN)[0].body


async def test_empty_tools_give_a_tool_request_without_calls_and_send_no_tools(
    replay: ReplayServer,
) -> None:
    llm = openai_model(replay, PLAIN)
    result = await llm.call_single(QUESTION, tools=[])
    (message,) = result.messages
    assert isinstance(message, ToolRequestMessage)
    assert message.tool_calls == []
    assert message.content == recorded(PLAIN)["body"]["choices"][0]["message"]["content"]
    sent = replay.requests_for(PLAIN)[0].body
    assert "tools" not in sent
    assert "tool_choice" not in sent
    plain = await llm.call_single(QUESTION)
    assert type(plain.messages[0]) is Message


async def test_callbacks_with_several_completions_refused_before_sending(replay: ReplayServer) -> None:
    llm = openai_model(replay, PLAIN)
    with pytest.raises(NotImplementedError, match="n=2"):
        await llm.call(QUESTION, callbacks=[print], n=2)
    configured = openai_model(replay, PLAIN, n=3)
    with pytest.raises(NotImplementedError, match="n=3"):
        await configured.call(QUESTION, callbacks=[])
    with pytest.raises(ValueError, match="n must be"):
        await llm.call(QUESTION, n=0)
    assert replay.requests_for(PLAIN) == []


async def test_callbacks_taking_name_receive_it(replay: ReplayServer) -> None:
    stream = "openai-chat-stream-29f559"
    llm = openai_model(replay, stream, temperature=1.0)
    got: list[tuple[str, str | None]] = []

    def named(delta: str, name: str | None = None) -> None:
        got.append((delta, name))

    result = await llm.call_single("Say hello", callbacks=[named], name="greeter")
    assert "".join(d for d, _ in got) == result.text
    assert {n for _, n in got} == {"greeter"}


async def test_type_adapter_output_type(replay: ReplayServer) -> None:
    name = "openai-chat-json-object-n2-3ffede"
    llm = openai_model(replay, name, model="gpt-4o", temperature=1.0)
    prompt = "My name is Claude and I am 1 year old. What is my name and age?"
    results = await llm.call(prompt, output_type=TypeAdapter(DummyOutputSchema), n=2)
    assert [DummyOutputSchema.model_validate_json(r.text) for r in results] == [
        DummyOutputSchema(name="Claude", age=1)
    ] * 2
    sent = replay.requests_for(name)[0].body
    assert sent["messages"] == recorded(name)["request"]["messages"]
    assert sent["response_format"] == {"type": "json_object"}


async def test_schema_joins_an_existing_system_message(replay: ReplayServer) -> None:
    llm = openai_model(replay, PLAIN)
    messages = [Message(role="system", content="Be terse."), Message(content=QUESTION)]
    with pytest.raises(ValueError, match="does not match"):
        await llm.call(messages, output_type=DummyOutputSchema)
    sent = replay.requests_for(PLAIN)[0].body["messages"]
    assert len(sent) == 2
    assert sent[0]["content"].startswith("Be terse.\nRespond following this JSON schema:\n\n{")


async def test_result_callback_sees_every_result(replay: ReplayServer) -> None:
    seen: list[LLMResult] = []

    async def keep(result: LLMResult) -> None:
        seen.append(result)

    llm = openai_model(replay, "openai-chat-n2-c3b9dc", temperature=1.0)
    llm.llm_result_callback = keep
    results = await llm.call(
        [
            Message(role="system", content="Respond with single words."),
            Message(content="What is the meaning of life?"),
        ],
        n=2,
    )
    assert seen == results
    assert "llm_result_callback" not in llm.model_dump()


def _with_fallback(replay: ReplayServer, **router: Any) -> dict[str, Any]:
    base = replay.openai_base(PLAIN)
    return {
        "model_list": [
            {"model_name": "primary", "litellm_params": {"model": "gpt-4o-mini", "api_base": base}},
            {"model_name": "backup", "litellm_params": {"model": "gpt-4o-mini", "api_base": base}},
        ],
        "fallbacks": [{"primary": ["backup"]}],
        "router_kwargs": {"retry_backoff": 0.01, **router},
    }


async def test_a_plain_bad_request_reaches_the_caller_as_litellms_class(replay: ReplayServer) -> None:
    replay.inject(
        PLAIN,
        Fault(status=400, body='{"error": {"message": "temperature too high", "type": "invalid_request"}}'),
    )
    llm = LiteLLMModel(name="primary", config=_with_fallback(replay))
    with pytest.raises(litellm.BadRequestError, match="temperature too high"):
        await llm.call_single(QUESTION)
    assert len(replay.requests_for(PLAIN)) == 1  # neither retried nor sent to the fallback


async def test_exhausted_chain_raises_all_models_exhausted_with_every_attempt(
    replay: ReplayServer,
) -> None:
    replay.inject(PLAIN, Fault(status=503, times=None))
    llm = LiteLLMModel(name="primary", config=_with_fallback(replay, num_retries=1))
    with pytest.raises(AllModelsExhaustedError) as raised:
        await llm.call_single(QUESTION)
    assert isinstance(raised.value, ModelCallError)
    assert [model for model, _ in raised.value.attempts] == ["primary", "primary", "backup", "backup"]
    assert isinstance(raised.value.last_exc, litellm.ServiceUnavailableError)
    assert raised.value.__cause__ is raised.value.last_exc


async def test_not_found_falls_back(replay: ReplayServer) -> None:
    replay.inject(PLAIN, Fault(status=404, body='{"error": {"message": "no such model"}}'))
    llm = LiteLLMModel(name="primary", config=_with_fallback(replay))
    with warnings.catch_warnings():
        result = await llm.call_single(QUESTION)
    assert result.model == "backup"


async def test_a_tool_request_without_calls_goes_back_as_a_plain_message(replay: ReplayServer) -> None:
    name = "openai-chat-25bb48"  # a conversation: user, assistant "Hi!", user
    request = recorded(name)["request"]
    first, answer, last = (m["content"] for m in request["messages"])
    llm = openai_model(replay, name, temperature=request["temperature"])
    history = [
        Message(content=first),
        ToolRequestMessage(content=answer, tool_calls=[]),  # what call(tools=[]) answers
        Message(content=last),
    ]
    await llm.call(history, n=request.get("n", 1))
    assert replay.requests_for(name)[0].body["messages"] == request["messages"]


async def test_openrouter_reasoning_effort_goes_in_its_reasoning_object(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-not-a-real-key")
    llm = LiteLLMModel(
        config={"name": "openrouter/openai/gpt-4o-mini", "api_base": replay.openai_base(PLAIN)}
    )
    await llm.call_single(QUESTION, reasoning_effort="low")
    sent = replay.requests_for(PLAIN)[0].body
    assert "reasoning_effort" not in sent
    assert sent["reasoning"] == {"effort": "low"}


async def test_select_tool_uses_the_primary_model(replay: ReplayServer) -> None:
    from aviary.core import Tool

    def double(x: int) -> int:
        """Double the input.

        Args:
            x: The input to double
        """
        return 2 * x

    name = "openai-chat-tools-3055a4"
    exchange = recorded(name)
    llm = openai_model(replay, name, temperature=1.0)
    messages = [
        Message(role="system", content=exchange["request"]["messages"][0]["content"]),
        Message(content="What is double of 8?"),
    ]
    selected = await llm.select_tool(messages, tools=[Tool.from_function(double)], tool_choice="auto")
    assert isinstance(selected, ToolRequestMessage)
    assert selected.tool_calls[0].id == exchange["body"]["choices"][0]["message"]["tool_calls"][0]["id"]
    assert selected.tool_calls[0].function.arguments == {"x": 8}
    assert replay.requests_for(name)[0].body["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("model", "tool_role"), [("openai/gemini-3-pro-preview", "user"), ("gpt-4o-mini", "tool")]
)
async def test_gemini_3_receives_tool_responses_as_user_turns(
    replay: ReplayServer, model: str, tool_role: str
) -> None:
    from aviary.core import ToolCall, ToolResponseMessage

    call = ToolCall.from_name("lookup", query="x")
    history = [
        Message(content="Look it up."),
        ToolRequestMessage(content=None, tool_calls=[call]),
        ToolResponseMessage(content="found", name="lookup", tool_call_id=call.id),
    ]
    llm = LiteLLMModel(config={"name": model, "api_base": replay.openai_base(PLAIN)})
    await llm.call_single(history)
    sent = replay.requests_for(PLAIN)[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", tool_role]
    assert sent[2]["content"] == "found"


async def test_json_schema_output_type_is_sent_as_openai_strict_mode_needs_it(replay: ReplayServer) -> None:
    """The request matches the recorded one, which OpenAI accepted: the root closed to extra properties."""
    recording = "openai-chat-json-schema-n2-001bed"
    exchange = recorded(recording)
    llm = openai_model(replay, recording, model="gpt-4o-2024-11-20", temperature=1.0, n=2)
    schema = DummyOutputSchema.model_json_schema()
    assert "additionalProperties" not in schema  # the caller's schema leaves it open ...
    results = await llm.call(exchange["request"]["messages"][0]["content"], output_type=schema)
    sent = replay.requests_for(recording)[0].body["response_format"]
    assert sent == exchange["request"]["response_format"]  # ... the request closes it
    assert sent["json_schema"]["schema"]["additionalProperties"] is False
    assert schema == DummyOutputSchema.model_json_schema()  # and the caller's dict is left alone
    assert [r.text for r in results] == [c["message"]["content"] for c in exchange["body"]["choices"]]


def test_a_subclass_answering_one_way_can_be_built() -> None:
    """LLMModel has no abstract methods (as in fhlmi): what a subclass lacks fails when it is used."""

    class Bare(LLMModel):
        pass

    assert str(Bare(name="bare")) == "Bare bare"
    assert Bare(name="bare").count_tokens("abcdefgh") == 2


async def test_what_a_subclass_lacks_raises_not_implemented() -> None:
    class OnlyPlain(LLMModel):
        async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
            return [LLMResult(model=self.name, text="plain")]

    llm = OnlyPlain(name="plain")
    assert (await llm.call_single(QUESTION)).text == "plain"
    with pytest.raises(NotImplementedError, match="OnlyPlain"):
        await llm.call_single(QUESTION, callbacks=[lambda _: None])
    with pytest.raises(NotImplementedError, match="Bare"):
        await type("Bare", (LLMModel,), {})(name="bare").call_single(QUESTION)


def test_a_subclass_needs_a_name() -> None:
    class Unnamed(LLMModel):
        pass

    with pytest.raises(ValidationError, match="name"):
        Unnamed()
    assert Unnamed(name="named").name == "named"
