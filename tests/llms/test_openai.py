"""LiteLLMModel against recorded OpenAI chat exchanges: texts, counts and the request bodies sent."""

from __future__ import annotations

import json

import pytest
from aviary.core import Message, Tool, ToolRequestMessage
from pydantic import BaseModel, Field

from lmi import JSONSchemaValidationError, LLMResult
from tests.llms.helpers import openai_model, recorded, sse_events
from tests.replay import ReplayServer


async def test_plain_completion_text_counts_and_request(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-0b8092")
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=3)

    result = await llm.call_single("Please tell me a story")

    body = exchange["body"]
    assert result.text == body["choices"][0]["message"]["content"] == "In a small"
    assert str(result) == result.text
    assert result.prompt_count == body["usage"]["prompt_tokens"]
    assert result.completion_count == body["usage"]["completion_tokens"]
    assert result.finish_reason == "length"
    assert result.model == "gpt-4o-mini"
    assert isinstance(result.messages[0], Message)
    assert result.messages[0].role == "assistant"
    assert result.seconds_to_first_token == 0  # not streamed
    assert result.seconds_to_last_token > 0
    sent = replay.requests_for("openai-chat-0b8092")[0].body
    assert sent["messages"] == [{"role": "user", "content": "Please tell me a story"}]
    assert sent["max_tokens"] == 3
    assert sent["model"] == "gpt-4o-mini"


async def test_config_params_reach_the_provider(replay: ReplayServer) -> None:
    llm = openai_model(
        replay,
        "openai-chat-n2-c3b9dc",
        temperature=0.25,
        top_p=0.9,
        frequency_penalty=1.5,
        max_tokens=17,
        n=2,
    )
    await llm.call(
        [Message(role="system", content="Respond with single words."), Message(content="Hello, how are you?")]
    )
    sent = replay.requests_for("openai-chat-n2-c3b9dc")[0].body
    assert (sent["temperature"], sent["top_p"], sent["frequency_penalty"]) == (0.25, 0.9, 1.5)
    assert (sent["max_tokens"], sent["n"]) == (17, 2)


async def test_n2_returns_one_result_per_choice_without_multiplying_usage(replay: ReplayServer) -> None:
    body = recorded("openai-chat-n2-c3b9dc")["body"]
    llm = openai_model(replay, "openai-chat-n2-c3b9dc", temperature=1.0)
    messages = [
        Message(role="system", content="Respond with single words."),
        Message(content="Hello, how are you?"),
    ]

    results = await llm.call(messages, n=2)

    assert [r.text for r in results] == [c["message"]["content"] for c in body["choices"]]
    assert sum(r.prompt_count for r in results) == body["usage"]["prompt_tokens"]
    assert sum(r.completion_count for r in results) == body["usage"]["completion_tokens"]
    assert replay.requests_for("openai-chat-n2-c3b9dc")[0].body["n"] == 2


async def test_flat_config_shape(replay: ReplayServer) -> None:
    from lmi import LiteLLMModel

    config = {
        "name": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 56,
        "api_base": replay.openai_base("openai-chat-634cf7"),
    }
    llm = LiteLLMModel(config=config)
    assert llm.name == "gpt-4o-mini"
    result = await llm.call_single(
        [
            Message(role="system", content="Respond with single words."),
            Message(content="What is the meaning of the universe?"),
        ]
    )
    assert result.text == recorded("openai-chat-634cf7")["body"]["choices"][0]["message"]["content"]
    sent = replay.requests_for("openai-chat-634cf7")[0].body
    assert (sent["temperature"], sent["max_tokens"]) == (0, 56)


async def test_stream_callbacks_sync_and_async_concatenate_to_text(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-stream-29f559")
    events = sse_events(exchange)
    expected_text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    usage = next(e["usage"] for e in events if e.get("usage"))
    replay.stream_delay = 0.002
    llm = openai_model(replay, "openai-chat-stream-29f559", temperature=1.0)
    sync_deltas: list[str] = []
    async_deltas: list[str] = []

    async def async_callback(delta: str) -> None:
        async_deltas.append(delta)

    result = await llm.call_single("Say hello", callbacks=[sync_deltas.append, async_callback])

    assert result.text == expected_text
    assert "".join(sync_deltas) == "".join(async_deltas) == expected_text
    assert len(sync_deltas) > 1
    assert result.prompt_count == usage["prompt_tokens"]
    assert result.completion_count == usage["completion_tokens"]
    assert 0 < result.seconds_to_first_token < result.seconds_to_last_token
    sent = replay.requests_for("openai-chat-stream-29f559")[0].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_stream_logprobs_sum(replay: ReplayServer) -> None:
    events = sse_events(recorded("openai-chat-stream-a17ec2"))
    expected = sum(
        t["logprob"]
        for e in events
        for c in e["choices"]
        for t in (c.get("logprobs") or {}).get("content") or []
    )
    llm = openai_model(replay, "openai-chat-stream-a17ec2", temperature=0, max_tokens=56, logprobs=True)
    messages = [
        Message(role="system", content="You are a helpful assistant."),
        Message(content="The duck says"),
    ]
    result = await llm.call_single(messages, callbacks=[lambda _: None])
    assert result.logprob == pytest.approx(expected)


def double(x: int) -> int:
    """Double the input.

    Args:
        x: The input to double
    """
    return 2 * x


async def test_tool_call_becomes_tool_request_message(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-tools-3055a4")
    llm = openai_model(replay, "openai-chat-tools-3055a4", temperature=1.0)
    tool = Tool.from_function(double)
    messages = [
        Message(role="system", content=exchange["request"]["messages"][0]["content"]),
        Message(content="What is double of 8?"),
    ]

    result = await llm.call_single(messages, tools=[tool], tool_choice="auto")

    (message,) = result.messages
    assert isinstance(message, ToolRequestMessage)
    recorded_call = exchange["body"]["choices"][0]["message"]["tool_calls"][0]
    assert message.tool_calls[0].id == recorded_call["id"]
    assert message.tool_calls[0].function.name == "double"
    assert (
        message.tool_calls[0].function.arguments
        == json.loads(recorded_call["function"]["arguments"])
        == {"x": 8}
    )
    assert result.finish_reason == "tool_calls"
    sent = replay.requests_for("openai-chat-tools-3055a4")[0].body
    assert sent["tools"] == exchange["request"]["tools"]
    assert sent["tool_choice"] == "auto"


async def test_tool_choice_required_by_default_and_named_tool(replay: ReplayServer) -> None:
    llm = openai_model(replay, "openai-chat-tools-3055a4")
    tool = Tool.from_function(double)
    await llm.call_single("What is double of 8?", tools=[tool])
    await llm.call_single("What is double of 8?", tools=[tool], tool_choice=tool)
    first, second = (r.body for r in replay.requests_for("openai-chat-tools-3055a4"))
    assert first["tool_choice"] == "required"
    assert second["tool_choice"] == {"type": "function", "function": {"name": "double"}}


class DummyOutputSchema(BaseModel):
    name: str
    age: int = Field(description="Age in years.")


async def test_output_type_model_uses_json_mode_with_schema_in_messages(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-json-object-n2-3ffede")
    llm = openai_model(replay, "openai-chat-json-object-n2-3ffede", model="gpt-4o", temperature=1.0)
    prompt = "My name is Claude and I am 1 year old. What is my name and age?"

    results = await llm.call(prompt, output_type=DummyOutputSchema, n=2)

    assert len(results) == 2
    for result in results:
        assert DummyOutputSchema.model_validate_json(result.text) == DummyOutputSchema(name="Claude", age=1)
    sent = replay.requests_for("openai-chat-json-object-n2-3ffede")[0].body
    assert sent["messages"] == exchange["request"]["messages"]
    assert sent["response_format"] == {"type": "json_object"}


async def test_output_type_dict_uses_strict_json_schema(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-json-schema-n2-001bed")
    schema = exchange["request"]["response_format"]["json_schema"]["schema"]
    llm = openai_model(replay, "openai-chat-json-schema-n2-001bed", model="gpt-4o", temperature=1.0)

    results = await llm.call(exchange["request"]["messages"][0]["content"], output_type=schema, n=2)

    assert [json.loads(r.text) for r in results] == [{"name": "Claude", "age": 1}] * 2
    sent = replay.requests_for("openai-chat-json-schema-n2-001bed")[0].body
    assert sent["response_format"] == exchange["request"]["response_format"]


async def test_output_mismatch_raises_with_raw_text(replay: ReplayServer) -> None:
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=3)
    with pytest.raises(JSONSchemaValidationError) as info:
        await llm.call_single("Please tell me a story", output_type=DummyOutputSchema)
    assert info.value.text == "In a small"
    assert isinstance(info.value, ValueError)


async def test_schema_mismatch_for_dict_schema(replay: ReplayServer) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "string"}}, "required": ["age"], "title": "S"}
    llm = openai_model(replay, "openai-chat-json-schema-n2-001bed", model="gpt-4o")
    with pytest.raises(JSONSchemaValidationError, match="age") as info:
        await llm.call_single(
            "My name is Claude and I am 1 year old. What is my name and age?", output_type=schema
        )
    assert json.loads(info.value.text) == {"name": "Claude", "age": 1}


async def test_reasoning_tokens_counted(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-reasoning-4b12ec")
    usage = exchange["body"]["usage"]
    llm = openai_model(replay, "openai-chat-reasoning-4b12ec", model="gpt-5")
    messages = [
        Message(role="system", content=exchange["request"]["messages"][0]["content"]),
        Message(content="What is the meaning of life?"),
    ]

    result = await llm.call_single(messages, reasoning_effort="high")

    assert result.text == exchange["body"]["choices"][0]["message"]["content"]
    assert result.completion_count == usage["completion_tokens"]
    assert result.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert replay.requests_for("openai-chat-reasoning-4b12ec")[0].body["reasoning_effort"] == "high"


async def test_multimodal_message_is_sent_as_content_parts(replay: ReplayServer) -> None:
    exchange = recorded("openai-chat-n2-image-7491e6")
    parts = exchange["request"]["messages"][0]["content"]
    image_url, text = parts[0]["image_url"]["url"], parts[1]["text"]
    llm = openai_model(replay, "openai-chat-n2-image-7491e6", temperature=1.0)
    results = await llm.call([Message.create_message(text=text, images=[image_url])], n=2)
    assert [r.text for r in results] == ["Red", "Red"]
    assert (
        replay.requests_for("openai-chat-n2-image-7491e6")[0].body["messages"]
        == exchange["request"]["messages"]
    )


def test_result_defaults() -> None:
    result = LLMResult(model="m", text="t")
    assert (result.cost, result.prompt_count, result.completion_count, str(result)) == (0.0, 0, 0, "t")


async def test_a_failing_callback_surfaces_as_itself(replay: ReplayServer) -> None:
    llm = openai_model(replay, "openai-chat-stream-29f559", temperature=1.0)

    def broken(delta: str) -> None:
        raise KeyError("bug in my callback")

    with pytest.raises(KeyError, match="bug in my callback"):
        await llm.call_single("Say hello", callbacks=[broken])
    assert len(replay.requests_for("openai-chat-stream-29f559")) == 1  # not retried
