"""Outside-in conformance: one test per concrete claim of the seed README and SPEC.md (public names only).

Each test exercises what a user of ``import lmi`` sees, against the loopback replay server serving real
recorded exchanges (or a one-field variant of one), and a real redis-server where Redis is involved. The
seed writes ``from aviary import Message``; with fhaviary installed ``aviary`` is a namespace package, so
the import that works is ``from aviary.core import Message``.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aviary.core import Message, Tool, ToolRequestMessage
from pydantic import BaseModel, Field

import lmi
from lmi import LiteLLMModel, LLMModel, LLMResult
from lmi.rate_limiter import GLOBAL_LIMITER, GlobalRateLimiter
from tests.rate_limiter.conftest import RedisServer
from tests.replay import Fault, ReplayServer, load_recording

PLAIN = "openai-chat-0b8092"  # "Please tell me a story", max_tokens=3 -> "In a small"
N2 = "openai-chat-n2-c3b9dc"
JSON_OBJECT = "openai-chat-json-object-n2-3ffede"
JSON_SCHEMA = "openai-chat-json-schema-n2-001bed"
TOOLS = "openai-chat-tools-3055a4"
STREAM = "openai-chat-stream-29f559"
EMBED = "openai-embeddings-495721"  # ["my", "name", "is", "neo"], then halves
NAME_AGE_PROMPT = "My name is Claude and I am 1 year old. What is my name and age?"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[str]:
    """``redis://127.0.0.1:<port>`` of a redis-server of this module."""
    server = RedisServer()
    yield server.url
    server.kill()


def body_of(recording: str, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_recording(recording)[index]["response"])
    return body


def with_content(replay: ReplayServer, recording: str, contents: list[str]) -> str:
    """Serve a variant of ``recording`` whose choices' message contents are ``contents``; its name."""
    exchanges = copy.deepcopy(load_recording(recording))
    body = json.loads(exchanges[0]["response"])
    for choice, content in zip(body["choices"], contents, strict=True):
        choice["message"]["content"] = content
    exchanges[0]["response"] = json.dumps(body)
    name = f"{recording}-variant-{abs(hash(tuple(contents)))}"
    replay.add_recording(name, exchanges[:1])
    return name


def openai_llm(
    replay: ReplayServer, recording: str, model: str = "gpt-4o-mini", **params: Any
) -> LiteLLMModel:
    litellm_params = {"model": model, "api_base": replay.openai_base(recording), **params}
    return LiteLLMModel(
        name=model, config={"model_list": [{"model_name": model, "litellm_params": litellm_params}]}
    )


def price_map_entry(model: str) -> dict[str, Any]:
    """litellm's shipped price map, read as a file: an oracle independent of lmi's pricing code."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    entry: dict[str, Any] = json.loads(path.read_text())[model]
    return entry


# --- Package -------------------------------------------------------------------------------------------


SPEC_EXPORTS = [
    "LLMModel",
    "LiteLLMModel",
    "LLMResult",
    "GLOBAL_COST_TRACKER",
    "enable_cost_tracking",
    "cost_tracking_ctx",
    "EmbeddingModel",
    "LiteLLMEmbeddingModel",
    "SparseEmbeddingModel",
    "HybridEmbeddingModel",
    "SentenceTransformerEmbeddingModel",
    "embedding_model_factory",
    "JSONSchemaValidationError",
]


@pytest.mark.parametrize("name", SPEC_EXPORTS)
def test_lmi_exports_spec_names(name: str) -> None:
    assert getattr(lmi, name) is not None
    assert name in dir(lmi)
    exec(f"from lmi import {name}", {})  # the import statement users write


def test_rate_limiter_exports_global_rate_limiter_and_global_limiter() -> None:
    import lmi.rate_limiter as module

    assert isinstance(module.GLOBAL_LIMITER, module.GlobalRateLimiter)


def test_import_lmi_does_not_import_litellm_or_touch_the_network() -> None:
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network at import')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import lmi, lmi.rate_limiter\n"
        "assert 'litellm' not in sys.modules, 'litellm imported by import lmi'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# --- LLMResult ----------------------------------------------------------------------------------------

LLM_RESULT_FIELDS = [
    "id",
    "name",
    "model",
    "text",
    "messages",
    "prompt_count",
    "completion_count",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_content",
    "finish_reason",
    "cost",
    "seconds_to_first_token",
    "seconds_to_last_token",
    "date",
    "logprob",
]


def test_llm_result_minimal_construction_has_zero_cost_and_counts() -> None:
    result = LLMResult(model="m", text="t")
    assert (result.cost, result.prompt_count, result.completion_count) == (0, 0, 0)
    assert (result.cache_read_tokens, result.cache_creation_tokens) == (0, 0)
    for field in LLM_RESULT_FIELDS:
        assert hasattr(result, field), field
    assert str(result) == result.text == "t"


# --- LLMModel / LiteLLMModel --------------------------------------------------------------------------


def test_llm_model_is_abstract_with_name_and_config_fields() -> None:
    with pytest.raises(TypeError):
        LLMModel(name="x", config={})  # type: ignore[abstract]
    assert {"name", "config"} <= set(LLMModel.model_fields)


def test_lite_llm_model_default_construction_has_a_model_name() -> None:
    llm = LiteLLMModel()
    assert isinstance(llm.name, str)
    assert llm.name
    assert isinstance(llm.config, dict)


def test_seed_router_config_example_constructs() -> None:
    config = {
        "model_list": [
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "api_key": "sk-test-not-a-real-key",
                    "frequency_penalty": 1.5,
                    "top_p": 0.9,
                    "max_tokens": 512,
                    "temperature": 0.1,
                    "n": 5,
                },
            }
        ]
    }
    assert LiteLLMModel(name="gpt-4o", config=config).name == "gpt-4o"


async def test_custom_subclass_with_acompletion_gets_call_and_call_single() -> None:
    seen: list[list[Message]] = []

    class Echo(LLMModel):
        async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
            seen.append(list(messages))
            return [LLMResult(model=self.name, text=f"echo: {messages[-1].content}")]

        async def acompletion_iter(self, messages: list[Message], **kwargs: Any) -> AsyncIterator[LLMResult]:
            seen.append(list(messages))
            yield LLMResult(model=self.name, text=f"echo: {messages[-1].content}")

    llm = Echo(name="echo", config={})
    results = await llm.call("hi")
    single = await llm.call_single([Message(content="there")])
    assert [r.text for r in results] == ["echo: hi"]
    assert single.text == "echo: there"
    assert seen[0][0].role == "user"


async def test_call_single_with_a_string_sends_one_user_message(replay: ReplayServer) -> None:
    llm = openai_llm(replay, PLAIN, max_tokens=3)
    result = await llm.call_single("Please tell me a story")
    body = body_of(PLAIN)
    assert isinstance(result, LLMResult)
    assert result.text == body["choices"][0]["message"]["content"]
    assert str(result) == result.text
    assert (result.prompt_count, result.completion_count) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    assert replay.requests_for(PLAIN)[0].body["messages"] == [
        {"role": "user", "content": "Please tell me a story"}
    ]


async def test_call_with_messages_returns_a_list_of_results(replay: ReplayServer) -> None:
    llm = openai_llm(replay, PLAIN, max_tokens=3)
    results = await llm.call([Message(content="Please tell me a story")])
    assert isinstance(results, list)
    assert [r.text for r in results] == ["In a small"]
    assert results[0].messages[0].role == "assistant"
    assert results[0].date is not None


async def test_call_single_forces_n_1_even_when_config_asks_for_more(replay: ReplayServer) -> None:
    exchanges = copy.deepcopy(load_recording(N2))
    body = json.loads(exchanges[0]["response"])
    body["choices"] = body["choices"][:1]  # what the provider answers to n=1
    exchanges[0]["response"] = json.dumps(body)
    replay.add_recording(f"{N2}-one-choice", exchanges[:1])
    llm = openai_llm(replay, f"{N2}-one-choice", n=2)
    result = await llm.call_single(
        [Message(role="system", content="Respond with single words."), Message(content="Hello, how are you?")]
    )
    assert result.text == body["choices"][0]["message"]["content"]
    assert replay.requests_for(f"{N2}-one-choice")[0].body.get("n", 1) == 1


async def test_n_from_router_config_gives_one_result_per_choice(replay: ReplayServer) -> None:
    llm = openai_llm(replay, N2, n=2)
    results = await llm.call(
        [Message(role="system", content="Respond with single words."), Message(content="Hello, how are you?")]
    )
    assert [r.text for r in results] == [c["message"]["content"] for c in body_of(N2)["choices"]]


async def test_router_params_reach_the_provider_request(replay: ReplayServer) -> None:
    llm = openai_llm(
        replay,
        N2,
        temperature=0.1,
        top_p=0.9,
        frequency_penalty=1.5,
        max_tokens=512,
        n=2,
        api_key="sk-conformance-key",
        timeout=30,
    )
    await llm.call(
        [Message(role="system", content="Respond with single words."), Message(content="Hello, how are you?")]
    )
    (request,) = replay.requests_for(N2)
    sent = request.body
    assert (sent["temperature"], sent["top_p"], sent["frequency_penalty"]) == (0.1, 0.9, 1.5)
    assert (sent["max_tokens"], sent["n"]) == (512, 2)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["authorization"] == "Bearer sk-conformance-key"


async def test_flat_config_name_sets_the_model_and_params_reach_provider(replay: ReplayServer) -> None:
    llm = LiteLLMModel(
        config={
            "name": "gpt-4o-mini",
            "temperature": 0.1,
            "max_tokens": 3,
            "api_base": replay.openai_base(PLAIN),
        }
    )
    assert llm.name == "gpt-4o-mini"
    await llm.call_single("Please tell me a story")
    sent = replay.requests_for(PLAIN)[0].body
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o-mini", 0.1, 3)


async def test_stream_callbacks_receive_deltas_and_fill_token_timings(replay: ReplayServer) -> None:
    replay.stream_delay = 0.002
    llm = openai_llm(replay, STREAM, temperature=1.0)
    deltas: list[str] = []

    async def async_callback(delta: str) -> None:
        deltas.append(delta)

    result = await llm.call_single("Say hello", callbacks=[async_callback])
    assert "".join(deltas) == result.text
    assert result.text
    assert result.seconds_to_first_token is not None
    assert result.seconds_to_last_token is not None
    assert 0 < result.seconds_to_first_token <= result.seconds_to_last_token
    assert replay.requests_for(STREAM)[0].body["stream"] is True


class NameAge(BaseModel):
    name: str
    age: int = Field(description="Age in years.")


async def test_output_type_pydantic_uses_json_mode_and_validates(replay: ReplayServer) -> None:
    llm = openai_llm(replay, JSON_OBJECT, model="gpt-4o", temperature=1.0)
    results = await llm.call(NAME_AGE_PROMPT, output_type=NameAge, n=2)
    assert [NameAge.model_validate_json(r.text) for r in results] == [NameAge(name="Claude", age=1)] * 2
    sent = replay.requests_for(JSON_OBJECT)[0].body
    assert sent["response_format"] == {"type": "json_object"}
    assert "age" in json.dumps(sent["messages"])  # the schema is given to the model in the messages


async def test_output_type_json_schema_dict_uses_strict_json_schema(replay: ReplayServer) -> None:
    schema = NameAge.model_json_schema()
    llm = openai_llm(replay, JSON_SCHEMA, model="gpt-4o", temperature=1.0)
    results = await llm.call(NAME_AGE_PROMPT, output_type=schema, n=2)
    assert [json.loads(r.text) for r in results] == [{"name": "Claude", "age": 1}] * 2
    response_format = replay.requests_for(JSON_SCHEMA)[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True


@pytest.mark.parametrize("bad", ['{"name": "Claude"}', "Sorry, I cannot answer that."])
@pytest.mark.parametrize("output_type", ["model", "schema"])
async def test_output_type_mismatch_raises_json_schema_validation_error(
    replay: ReplayServer, output_type: str, bad: str
) -> None:
    recording = JSON_OBJECT if output_type == "model" else JSON_SCHEMA
    name = with_content(replay, recording, [bad, bad])
    llm = openai_llm(replay, name, model="gpt-4o", temperature=1.0)
    kind: Any = NameAge if output_type == "model" else NameAge.model_json_schema()
    with pytest.raises(lmi.JSONSchemaValidationError) as info:
        await llm.call(NAME_AGE_PROMPT, output_type=kind, n=2)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("fence", ["```json\n", "```\n"])
@pytest.mark.parametrize("output_type", ["model", "schema"])
async def test_output_type_tolerates_markdown_fences(
    replay: ReplayServer, output_type: str, fence: str
) -> None:
    recording = JSON_OBJECT if output_type == "model" else JSON_SCHEMA
    fenced = fence + '{"name": "Claude", "age": 1}\n```'
    name = with_content(replay, recording, [fenced, fenced])
    llm = openai_llm(replay, name, model="gpt-4o", temperature=1.0)
    kind: Any = NameAge if output_type == "model" else NameAge.model_json_schema()
    results = await llm.call(NAME_AGE_PROMPT, output_type=kind, n=2)
    assert len(results) == 2


def double(x: int) -> int:
    """Double the input.

    Args:
        x: The input to double
    """
    return 2 * x


async def test_tool_call_comes_back_as_tool_request_message_with_dict_arguments(replay: ReplayServer) -> None:
    recorded_request = load_recording(TOOLS)[0]["request"]
    llm = openai_llm(replay, TOOLS, temperature=1.0)
    messages = [
        Message(role="system", content=recorded_request["messages"][0]["content"]),
        Message(content="What is double of 8?"),
    ]
    result = await llm.call_single(messages, tools=[Tool.from_function(double)], tool_choice="auto")
    (message,) = result.messages
    assert isinstance(message, ToolRequestMessage)
    call = message.tool_calls[0]
    assert call.function.name == "double"
    assert isinstance(call.function.arguments, dict)
    recorded_call = body_of(TOOLS)["choices"][0]["message"]["tool_calls"][0]
    assert call.function.arguments == json.loads(recorded_call["function"]["arguments"])
    assert replay.requests_for(TOOLS)[0].body["tool_choice"] == "auto"


@pytest.mark.parametrize("choice", ["none", "required"])
async def test_tool_choice_strings_reach_the_provider(replay: ReplayServer, choice: str) -> None:
    llm = openai_llm(replay, TOOLS, temperature=1.0)
    await llm.call("What is double of 8?", tools=[Tool.from_function(double)], tool_choice=choice)
    assert replay.requests_for(TOOLS)[0].body["tool_choice"] == choice


async def test_retryable_5xx_is_retried_then_succeeds(replay: ReplayServer) -> None:
    replay.inject(PLAIN, Fault(status=503, headers={"retry-after": "0"}, times=1))
    llm = openai_llm(replay, PLAIN, max_tokens=3)
    result = await llm.call_single("Please tell me a story")
    assert result.text == "In a small"
    assert len(replay.requests_for(PLAIN)) == 2


async def test_dropped_connection_and_429_are_retried(replay: ReplayServer) -> None:
    replay.inject(PLAIN, Fault(drop=True, times=1))
    replay.inject(
        PLAIN,
        Fault(
            status=429,
            body=json.dumps(
                {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                }
            ),
            headers={"retry-after": "0"},
            times=1,
        ),
    )
    result = await openai_llm(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    assert result.text == "In a small"
    assert len(replay.requests_for(PLAIN)) == 3


# --- Rate limits through the LLM config ---------------------------------------------------------------


async def status_of(key: tuple[str, str]) -> int:
    status = await GLOBAL_LIMITER.rate_limit_status()
    return int(status[key]["n_items_in_period"]) if key in status else 0


async def test_config_rate_limit_and_request_limit_use_the_global_limiter_keys(replay: ReplayServer) -> None:
    model = f"conformance-{time.monotonic_ns()}"  # a fresh name: limiter counts outlive the test
    llm = LiteLLMModel(
        name=model,
        config={
            "model_list": [
                {
                    "model_name": model,
                    "litellm_params": {
                        "model": "gpt-4o-mini",
                        "api_base": replay.openai_base(PLAIN),
                        "max_tokens": 3,
                    },
                }
            ],
            "rate_limit": {model: "1000000 per 1 day"},
            "request_limit": {model: "1000 per 1 day"},
        },
    )
    tokens_before = await status_of(("client", model))
    requests_before = await status_of(("client|request", model))
    await llm.call_single("Please tell me a story")
    status = await GLOBAL_LIMITER.rate_limit_status()
    assert status[("client", model)]["period_cap"] == 1000000
    assert status[("client|request", model)]["period_cap"] == 1000
    assert status[("client|request", model)]["n_items_in_period"] - requests_before == 1
    usage = body_of(PLAIN)["usage"]
    consumed = status[("client", model)]["n_items_in_period"] - tokens_before
    assert consumed == usage["prompt_tokens"] + usage["completion_tokens"]


def test_seed_rate_limit_config_example_constructs() -> None:
    llm = LiteLLMModel(name="gpt-4", config={"rate_limit": {"gpt-4": "100/minute"}})
    assert llm.name == "gpt-4"


# --- GlobalRateLimiter --------------------------------------------------------------------------------


def test_in_memory_storage_is_named() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    assert "memory" in str(limiter.storage).lower()


async def test_redis_url_argument_selects_redis(redis_server: str) -> None:
    limiter = GlobalRateLimiter(redis_url=redis_server)
    await limiter.try_acquire(("conformance", "redis-arg"), rate_limit="5 per 1 second")
    assert "redis" in str(limiter.storage).lower()
    await limiter.aclose()


async def test_redis_url_env_without_scheme_selects_redis(
    redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.removeprefix("redis://"))
    limiter = GlobalRateLimiter()
    await limiter.try_acquire(("conformance", "redis-env"), rate_limit="5 per 1 second")
    assert "redis" in str(limiter.storage).lower()
    await limiter.aclose()


def test_use_in_memory_wins_over_redis_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    assert "memory" in str(GlobalRateLimiter(use_in_memory=True).storage).lower()


async def test_rate_config_is_a_mutable_dict_used_by_try_acquire() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    key = ("client", "gpt-4")
    limiter.rate_config[key] = "2 per 1 minute"
    await limiter.try_acquire(key)
    await limiter.try_acquire(key)
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(key, acquire_timeout=0.2)


@pytest.mark.parametrize("limit", ["100/minute", "5 per second", "1000/day", "3 per 2 hours"])
async def test_limit_strings_parse_into_status(limit: str) -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    key = ("client", "m")
    await limiter.try_acquire(key, rate_limit=limit)
    limiter.rate_config[key] = limit
    status = (await limiter.rate_limit_status())[key]
    assert status["n_items_in_period"] == 1
    assert status["period_cap"] == int(limit.split("/")[0].split(" ")[0])


async def test_rate_limit_item_objects_are_accepted() -> None:
    from limits import RateLimitItemPerMinute, RateLimitItemPerSecond

    limiter = GlobalRateLimiter(use_in_memory=True)
    limiter.rate_config[("client", "a")] = RateLimitItemPerSecond(30, 1)
    await limiter.try_acquire(("client", "a"))
    await limiter.try_acquire(("client", "b"), rate_limit=RateLimitItemPerMinute(1000, 1))
    status = await limiter.rate_limit_status()
    assert status[("client", "a")]["period_cap"] == 30
    assert status[("client", "a")]["period_seconds"] == 1


async def test_weight_that_can_never_fit_times_out_immediately() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(
            ("client", "gpt-4"), rate_limit="10 per 1 minute", weight=11, acquire_timeout=30
        )
    assert time.monotonic() - started < 5


async def test_acquire_timeout_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "0.3")
    limiter = GlobalRateLimiter(use_in_memory=True)
    key = ("client", "env-timeout")
    await limiter.try_acquire(key, rate_limit="1 per 1 minute")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(key, rate_limit="1 per 1 minute")
    assert 0.2 <= time.monotonic() - started < 10


async def test_weighted_acquire_waits_until_the_weight_fits() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    key = ("client", "weights")
    await limiter.try_acquire(key, rate_limit="10 per 1 second", weight=8)
    started = time.monotonic()
    await limiter.try_acquire(key, rate_limit="10 per 1 second", weight=5, acquire_timeout=10)
    assert time.monotonic() - started > 0.05  # had to wait for the window to free room


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_never_more_than_the_limit_in_any_window(backend: str, redis_server: str) -> None:
    limiter = (
        GlobalRateLimiter(use_in_memory=True)
        if backend == "memory"
        else GlobalRateLimiter(redis_url=redis_server)
    )
    key = ("client", f"exact-{backend}-{time.monotonic_ns()}")
    released: list[float] = []

    async def one() -> None:
        await limiter.try_acquire(key, rate_limit="3 per 1 second", acquire_timeout=10)
        released.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(6)))
    released.sort()
    assert len(released) == 6
    for i in range(len(released) - 3):
        assert released[i + 3] - released[i] >= 0.8, released  # 4 never in one second (timing slack)
    await limiter.aclose()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_rate_limit_status_shape_with_slashes_in_model_names(backend: str, redis_server: str) -> None:
    limiter = (
        GlobalRateLimiter(use_in_memory=True)
        if backend == "memory"
        else GlobalRateLimiter(redis_url=redis_server)
    )
    key = ("client", f"openrouter/openai/gpt-4o-{time.monotonic_ns()}")
    limiter.rate_config[key] = "100/minute"
    await limiter.try_acquire(key, weight=7)
    status = await limiter.rate_limit_status()
    assert key in status
    assert set(status[key]) == {
        "period_start",
        "n_items_in_period",
        "period_seconds",
        "period_name",
        "period_cap",
    }
    assert status[key]["n_items_in_period"] == 7
    assert (status[key]["period_seconds"], status[key]["period_name"], status[key]["period_cap"]) == (
        60,
        "minute",
        100,
    )
    assert abs(status[key]["period_start"] - time.time()) < 120
    await limiter.aclose()


# --- Embeddings ---------------------------------------------------------------------------------------


def embedding_model(replay: ReplayServer, **fields: Any) -> lmi.LiteLLMEmbeddingModel:
    kwargs = {"api_base": replay.openai_base(EMBED), "api_key": "sk-test-not-a-real-key"}
    return lmi.LiteLLMEmbeddingModel(config={"kwargs": kwargs}, **fields)


def recorded_vectors(inputs: list[str]) -> list[list[float]]:
    for exchange in load_recording(EMBED):
        if exchange["request"]["input"] == inputs:
            data = sorted(json.loads(exchange["response"])["data"], key=lambda d: d["index"])
            return [d["embedding"] for d in data]
    raise LookupError(inputs)


def same_vectors(got: list[list[float]], expected: list[list[float]]) -> bool:
    """Equal within float32 rounding (vectors may travel as base64 float32)."""
    return len(got) == len(expected) and all(
        len(g) == len(e) and all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(g, e, strict=True))
        for g, e in zip(got, expected, strict=True)
    )


def test_embedding_models_construct_without_importing_litellm_and_embed_nothing() -> None:
    code = (
        "import asyncio, sys\n"
        "from lmi import LiteLLMModel, LiteLLMEmbeddingModel, SparseEmbeddingModel, embedding_model_factory\n"
        "LiteLLMModel(); LiteLLMEmbeddingModel(); embedding_model_factory('hybrid-text-embedding-3-small')\n"
        "assert asyncio.run(SparseEmbeddingModel().embed_documents([])) == []\n"
        "assert 'litellm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_litellm_embedding_model_defaults_and_inferred_ndim() -> None:
    model = lmi.LiteLLMEmbeddingModel()
    assert model.name == "text-embedding-3-small"
    assert model.ndim == 1536


async def test_embed_documents_one_vector_per_input_in_order(replay: ReplayServer) -> None:
    words = ["my", "name", "is", "neo"]
    vectors = await embedding_model(replay, batch_size=2).embed_documents(words)
    assert len(vectors) == 4
    expected = recorded_vectors(["my", "name"]) + recorded_vectors(["is", "neo"])
    assert same_vectors(vectors, expected)


async def test_embed_documents_keeps_empty_strings_in_place(replay: ReplayServer) -> None:
    vectors = await embedding_model(replay).embed_documents(["my", "", "name"])
    assert len(vectors) == 3
    assert all(len(v) == 1536 for v in vectors)
    assert same_vectors([vectors[0], vectors[2]], recorded_vectors(["my", "name"]))


async def test_embed_document_returns_one_vector(replay: ReplayServer) -> None:
    vector = await lmi.SparseEmbeddingModel().embed_document("hello world")
    assert len(vector) == 256
    assert all(isinstance(x, float) for x in vector)


async def test_sparse_model_offline_ndim_and_empty_strings() -> None:
    model = lmi.SparseEmbeddingModel(ndim=64)
    vectors = await model.embed_documents(["a b", "", "c"])
    assert model.ndim == 64
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert vectors[0] != vectors[2]


def test_hybrid_ndim_is_the_sum() -> None:
    dense = lmi.LiteLLMEmbeddingModel(name="text-embedding-3-small")
    sparse = lmi.SparseEmbeddingModel()
    hybrid = lmi.HybridEmbeddingModel(models=[dense, sparse])
    assert hybrid.ndim == 1536 + 256 == 1792


async def test_hybrid_embeddings_are_the_concatenation(replay: ReplayServer) -> None:
    dense = embedding_model(replay)
    sparse = lmi.SparseEmbeddingModel()
    words = ["my", "name", "is", "neo"]
    hybrid = await lmi.HybridEmbeddingModel(models=[dense, sparse]).embed_documents(words)
    sparse_vectors = await sparse.embed_documents(words)
    for vector, dense_vector, sparse_vector in zip(
        hybrid, recorded_vectors(words), sparse_vectors, strict=True
    ):
        assert same_vectors([vector[:1536], vector[1536:]], [dense_vector, sparse_vector])


def test_embedding_model_factory_names() -> None:
    factory = lmi.embedding_model_factory
    assert isinstance(factory("text-embedding-3-small"), lmi.LiteLLMEmbeddingModel)
    assert isinstance(factory("sparse"), lmi.SparseEmbeddingModel)
    hybrid = factory("hybrid-text-embedding-3-small")
    assert isinstance(hybrid, lmi.HybridEmbeddingModel)
    assert hybrid.ndim == 1536 + 256
    st = factory("st-sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(st, lmi.SentenceTransformerEmbeddingModel)
    assert isinstance(st, lmi.EmbeddingModel)


# --- Cost tracking -------------------------------------------------------------------------------------


def expected_cost(recording: str, model: str) -> float:
    usage = body_of(recording)["usage"]
    prices = price_map_entry(model)
    return float(
        usage["prompt_tokens"] * prices["input_cost_per_token"]
        + usage["completion_tokens"] * prices["output_cost_per_token"]
    )


async def test_result_cost_is_usage_times_price(replay: ReplayServer) -> None:
    result = await openai_llm(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    assert result.cost == pytest.approx(expected_cost(PLAIN, "gpt-4o-mini"), rel=1e-9)
    assert result.cost > 0


async def test_global_cost_tracker_grows_per_model_with_callbacks(replay: ReplayServer) -> None:
    tracker = lmi.GLOBAL_COST_TRACKER
    records: list[Any] = []
    tracker.add_callback(records.append)
    try:
        before = tracker.lifetime_cost_usd
        calls_before = tracker.by_model["gpt-4o-mini"].calls if "gpt-4o-mini" in tracker.by_model else 0
        with lmi.cost_tracking_ctx():
            result = await openai_llm(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
        assert tracker.lifetime_cost_usd - before == pytest.approx(result.cost, rel=1e-9)
        assert tracker.by_model["gpt-4o-mini"].calls == calls_before + 1
        assert len(records) == 1
        assert records[0].cost_usd == pytest.approx(result.cost)
    finally:
        tracker.remove_callback(records.append)


@pytest.fixture
def process_tracking_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """enable_cost_tracking sets a process-wide default: put back the one before the test."""
    from lmi.cost import tracker

    monkeypatch.setattr(tracker, "_process_default", tracker._process_default)


@pytest.mark.usefixtures("process_tracking_default")
async def test_cost_tracking_disabled_does_not_grow(replay: ReplayServer) -> None:
    tracker = lmi.GLOBAL_COST_TRACKER
    llm = openai_llm(replay, PLAIN, max_tokens=3)
    lmi.enable_cost_tracking(False)
    before = tracker.lifetime_cost_usd
    await llm.call_single("Please tell me a story")
    lmi.enable_cost_tracking(True)
    with lmi.cost_tracking_ctx(False):
        await llm.call_single("Please tell me a story")
    assert tracker.lifetime_cost_usd == before
    result = await llm.call_single("Please tell me a story")
    assert tracker.lifetime_cost_usd - before == pytest.approx(result.cost)


async def test_cost_tracking_ctx_spans_concurrent_tasks(replay: ReplayServer) -> None:
    tracker = lmi.GLOBAL_COST_TRACKER
    llm = openai_llm(replay, PLAIN, max_tokens=3)
    before = tracker.lifetime_cost_usd
    with lmi.cost_tracking_ctx():
        results = await asyncio.gather(*(llm.call_single("Please tell me a story") for _ in range(3)))
    assert tracker.lifetime_cost_usd - before == pytest.approx(sum(r.cost for r in results))


# --- Anthropic, reasoning, caching, streaming cost ------------------------------------------------------


def anthropic_llm(replay: ReplayServer, recording: str, model: str, **params: Any) -> LiteLLMModel:
    litellm_params = {"model": model, "api_base": replay.anthropic_base(recording), **params}
    return LiteLLMModel(
        name=model, config={"model_list": [{"model_name": model, "litellm_params": litellm_params}]}
    )


async def test_anthropic_text_counts_and_cost(replay: ReplayServer) -> None:
    recording, model = "anthropic-messages-29fd16", "claude-haiku-4-5-20251001"
    result = await anthropic_llm(replay, recording, model, temperature=1.0, max_tokens=56).call_single(
        "What does 42 mean?"
    )
    body = body_of(recording)
    usage, prices = body["usage"], price_map_entry(model)
    assert result.text == body["content"][0]["text"]
    assert (result.prompt_count, result.completion_count) == (usage["input_tokens"], usage["output_tokens"])
    assert result.finish_reason in {"length", "max_tokens"}
    expected = (
        usage["input_tokens"] * prices["input_cost_per_token"]
        + usage["output_tokens"] * prices["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, rel=1e-9)


async def test_anthropic_reasoning_content(replay: ReplayServer) -> None:
    recording, model = "anthropic-messages-reasoning-07bc62", "claude-sonnet-4-5-20250929"
    llm = anthropic_llm(
        replay, recording, model, max_tokens=5120, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    result = await llm.call_single("What is the meaning of life?")
    blocks = body_of(recording)["content"]
    thinking = "".join(b["thinking"] for b in blocks if b["type"] == "thinking")
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    assert result.reasoning_content == thinking
    assert result.text == text


async def test_anthropic_cache_creation_tokens_are_reported_and_priced(replay: ReplayServer) -> None:
    recording, model = "anthropic-messages-cache-218dab", "claude-sonnet-4-5-20250929"
    exchange = load_recording(recording)[0]
    system = exchange["request"]["system"][0]["text"]
    llm = anthropic_llm(replay, recording, model, temperature=0, max_tokens=64000)
    result = await llm.call_single([Message(role="system", content=system), Message(content="Say hi.")])
    usage, prices = json.loads(exchange["response"])["usage"], price_map_entry(model)
    assert result.cache_creation_tokens == usage["cache_creation_input_tokens"] > 0
    assert result.cache_read_tokens == usage["cache_read_input_tokens"]
    expected = (
        usage["input_tokens"] * prices["input_cost_per_token"]
        + usage["cache_creation_input_tokens"] * prices["cache_creation_input_token_cost"]
        + usage["output_tokens"] * prices["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, rel=1e-9)


async def test_streamed_call_is_priced(replay: ReplayServer) -> None:
    llm = openai_llm(replay, STREAM, temperature=1.0)
    result = await llm.call_single("Say hello", callbacks=[lambda _: None])
    events = [
        json.loads(line[len("data:") :])
        for line in load_recording(STREAM)[0]["response"].splitlines()
        if line.startswith("data:") and line.strip() != "data: [DONE]"
    ]
    usage = next(e["usage"] for e in events if e.get("usage"))
    prices = price_map_entry("gpt-4o-mini")
    expected = (
        usage["prompt_tokens"] * prices["input_cost_per_token"]
        + usage["completion_tokens"] * prices["output_cost_per_token"]
    )
    assert result.cost == pytest.approx(expected, rel=1e-9)


# --- Reliability: fallbacks and one clear error -------------------------------------------------------


# A model the provider does not know: not worth retrying, worth the next model (OpenAI's error body shape).
MODEL_NOT_FOUND = json.dumps(
    {
        "error": {
            "message": "The model does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
)


async def test_fallback_to_the_next_model_then_one_error_naming_every_model(replay: ReplayServer) -> None:
    first, second = "gpt-4o-mini", "claude-haiku-4-5-20251001"
    config = {
        "model_list": [
            {
                "model_name": first,
                "litellm_params": {"model": first, "api_base": replay.openai_base("dead-a")},
            },
            {
                "model_name": second,
                "litellm_params": {"model": second, "api_base": replay.anthropic_base("dead-b")},
            },
        ],
        "fallbacks": [{first: [second]}],
    }
    for name in ("dead-a", "dead-b"):
        replay.inject(
            name,
            Fault(status=404, body=MODEL_NOT_FOUND, times=None),
        )
    with pytest.raises(Exception) as info:  # noqa: PT011 - the claim is about the message
        await LiteLLMModel(name=first, config=config).call_single("hi")
    assert first in str(info.value)
    assert second in str(info.value)
    assert replay.requests_for("dead-a")
    assert replay.requests_for("dead-b")


async def test_fallback_answers_when_the_first_model_fails(replay: ReplayServer) -> None:
    first, second = "gpt-4o", "gpt-4o-mini"
    config = {
        "model_list": [
            {
                "model_name": first,
                "litellm_params": {"model": first, "api_base": replay.openai_base("dead-c")},
            },
            {
                "model_name": second,
                "litellm_params": {"model": second, "api_base": replay.openai_base(PLAIN), "max_tokens": 3},
            },
        ],
        "fallbacks": [{first: [second]}],
    }
    replay.inject(
        "dead-c",
        Fault(status=404, body=MODEL_NOT_FOUND, times=None),
    )
    result = await LiteLLMModel(name=first, config=config).call_single("Please tell me a story")
    assert result.text == "In a small"


async def test_request_limit_blocks_the_call_beyond_it(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "0.3")
    model = f"conformance-{time.monotonic_ns()}"  # a fresh name: limiter counts outlive the test
    llm = LiteLLMModel(
        name=model,
        config={
            "model_list": [
                {
                    "model_name": model,
                    "litellm_params": {
                        "model": "gpt-4o-mini",
                        "api_base": replay.openai_base(PLAIN),
                        "max_tokens": 3,
                    },
                }
            ],
            "request_limit": {model: "1 per 1 day"},
        },
    )
    await llm.call_single("Please tell me a story")
    with pytest.raises(TimeoutError):
        await llm.call_single("Please tell me a story")
    assert len(replay.requests_for(PLAIN)) == 1


async def test_embedding_inputs_over_the_token_limit_are_truncated(replay: ReplayServer) -> None:
    long_text = "neo " * 20000  # far over text-embedding-3-small's 8191 tokens
    one = "openai-embeddings-c41734"  # one vector back, for ["test1"]
    kwargs = {"api_base": replay.openai_base(one), "api_key": "sk-test-not-a-real-key"}
    (vector,) = await lmi.LiteLLMEmbeddingModel(config={"kwargs": kwargs}).embed_documents([long_text])
    assert len(vector) == 1536
    (request,) = replay.requests_for(one)
    (sent,) = request.body["input"]
    assert len(sent) < len(long_text)
    assert long_text.startswith(sent)


def test_seed_embedding_example_constructs() -> None:
    model = lmi.LiteLLMEmbeddingModel(
        name="text-embedding-ada-002",
        batch_size=16,
        config={"kwargs": {"api_key": "sk-test-not-a-real-key"}, "rate_limit": "100/minute"},
    )
    assert (model.name, model.ndim) == ("text-embedding-ada-002", 1536)


# --- More of the same claims, from other angles ---------------------------------------------------------


async def test_rate_config_constructor_argument_and_explicit_override() -> None:
    key = ("client", "ctor")
    limiter = GlobalRateLimiter(rate_config={key: "1 per 1 minute"}, use_in_memory=True)
    await limiter.try_acquire(key)
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(key, acquire_timeout=0.1)
    await limiter.try_acquire(key, rate_limit="5 per 1 minute", acquire_timeout=0.1)  # the override wins


async def test_acquire_timeout_waits_about_that_long() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    key = ("client", "timeout")
    await limiter.try_acquire(key, rate_limit="1 per 1 minute")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(key, rate_limit="1 per 1 minute", acquire_timeout=0.5)
    assert time.monotonic() - started < 10


async def test_named_tool_choice_and_sync_callbacks(replay: ReplayServer) -> None:
    tool = Tool.from_function(double)
    llm = openai_llm(replay, TOOLS, temperature=1.0)
    await llm.call_single("What is double of 8?", tools=[tool], tool_choice=tool)
    assert replay.requests_for(TOOLS)[0].body["tool_choice"] == {
        "type": "function",
        "function": {"name": "double"},
    }

    replay.stream_delay = 0.002
    deltas: list[str] = []
    result = await openai_llm(replay, STREAM, temperature=1.0).call_single(
        "Say hello", callbacks=[deltas.append]
    )
    assert "".join(deltas) == result.text
    assert len(deltas) > 1


async def test_result_date_is_when_the_call_finished(replay: ReplayServer) -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC)
    result = await openai_llm(replay, PLAIN, max_tokens=3).call_single("Please tell me a story")
    after = datetime.now(UTC)
    # A datetime or its ISO text (fhlmi's type); naive means local time.
    date = datetime.fromisoformat(result.date) if isinstance(result.date, str) else result.date
    date = date.astimezone(UTC)
    assert before <= date <= after
    assert result.name is None or isinstance(result.name, str)
    assert result.id is not None


async def test_tools_with_n2_give_a_tool_request_message_per_choice(replay: ReplayServer) -> None:
    recording = "openai-chat-tools-n2-1a141e"
    request = load_recording(recording)[0]["request"]
    tools = [Tool.model_validate(t) for t in request["tools"]]
    results = await openai_llm(replay, recording, model="gpt-3.5-turbo", temperature=1.0).call(
        "Please win.", tools=tools, tool_choice="required", n=2
    )
    assert len(results) == 2
    for result, choice in zip(results, body_of(recording)["choices"], strict=True):
        (message,) = result.messages
        assert isinstance(message, ToolRequestMessage)
        recorded_calls = choice["message"]["tool_calls"]
        assert [c.function.name for c in message.tool_calls] == [
            c["function"]["name"] for c in recorded_calls
        ]
        assert [c.function.arguments for c in message.tool_calls] == [
            json.loads(c["function"]["arguments"]) for c in recorded_calls
        ]


async def test_embedding_batches_are_sent_concurrently(replay: ReplayServer) -> None:
    replay.inject(EMBED, Fault(delay=0.5, replay=True, times=2))  # each answer takes half a second
    words = ["my", "name", "is", "neo"]
    vectors = await embedding_model(replay, batch_size=2).embed_documents(words)
    assert same_vectors(vectors, recorded_vectors(["my", "name"]) + recorded_vectors(["is", "neo"]))
    first, second = sorted(request.at for request in replay.requests_for(EMBED))
    assert second - first < 0.4  # the second batch left before the first was answered
