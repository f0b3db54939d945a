"""LiteLLMModel's fhlmi surface: default model, normalised config, llm_config, tool_parser, pickling."""

from __future__ import annotations

import json
import pickle
from typing import Any

import litellm
import pytest
from aviary.core import Message, ToolRequestMessage
from pydantic import ValidationError

from lmi import AllModelsExhaustedError, CommonLLMNames, LiteLLMModel
from lmi.config import LLMConfig, ModelSpec
from lmi.exceptions import ModelRefusalError, ResponseValidationError
from lmi.rate_limiter import GLOBAL_LIMITER
from tests.llms.helpers import recorded
from tests.replay import Fault, ReplayServer

PLAIN = "openai-chat-634cf7"
QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of life?"),
]


def test_default_model_is_fhlmis() -> None:
    llm = LiteLLMModel()
    assert llm.name == CommonLLMNames.GPT_4O == "gpt-4o-2024-11-20"
    assert llm.llm_config is not None
    assert [spec.name for spec in llm.llm_config.models] == ["gpt-4o-2024-11-20"]
    assert str(llm) == "LiteLLMModel gpt-4o-2024-11-20"


async def test_flat_config_is_reshaped_and_every_parameter_still_sent(replay: ReplayServer) -> None:
    base = replay.openai_base(PLAIN)
    flat = {"name": "gpt-4o-mini", "temperature": 0.5, "top_p": 0.9, "api_base": base, "timeout": 30}
    llm = LiteLLMModel(config=flat)
    (entry,) = llm.config["model_list"]
    assert entry["model_name"] == "gpt-4o-mini"
    params = entry["litellm_params"]
    assert (params["model"], params["n"], params["max_tokens"], params["temperature"]) == (
        "gpt-4o-mini",
        1,
        None,
        0.5,
    )
    for key, value in flat.items():  # the flat keys stay where fhlmi code reads them
        assert llm.config[key] == value
    await llm.call(QUESTION)
    sent = replay.requests_for(PLAIN)[0].body
    assert (sent["temperature"], sent["top_p"]) == (0.5, 0.9)  # fhlmi would drop top_p
    assert "max_tokens" not in sent  # None means "not set"
    # The normalised config builds the same model again.
    again = LiteLLMModel(name=llm.name, config=llm.config)
    assert [dict(d.params) for d in again.settings.chain] == [
        {**dict(d.params), "n": 1} for d in llm.settings.chain
    ]


def test_gemini_gets_fhlmis_safety_settings() -> None:
    from lmi.constants import DEFAULT_VERTEX_SAFETY_SETTINGS

    llm = LiteLLMModel(config={"name": "gemini/gemini-2.0-flash"})
    assert llm.settings.chain[0].params["safety_settings"] == DEFAULT_VERTEX_SAFETY_SETTINGS
    assert llm.config["model_list"][0]["litellm_params"]["safety_settings"] == DEFAULT_VERTEX_SAFETY_SETTINGS
    own = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    mine = LiteLLMModel(config={"name": "gemini/gemini-2.0-flash", "safety_settings": own})
    assert mine.settings.chain[0].params["safety_settings"] == own


def test_nested_config_and_tool_parser_in_config() -> None:
    def parser(text: str, tools: Any) -> Message:
        return Message(role="assistant", content=text)

    llm = LiteLLMModel(config={"config": {"name": "gpt-4o-mini", "temperature": 0.2}, "tool_parser": parser})
    assert llm.name == "gpt-4o-mini"
    assert llm.tool_parser is parser
    assert "tool_parser" not in llm.config
    assert llm.config["temperature"] == 0.2


def test_bad_keys_still_named() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        LiteLLMModel(config={"name": "gpt-4o", "temprature": 0.1})
    accepted = LiteLLMModel(config={"name": "gpt-4o", "model_name": "x", "responses_api": True})
    assert "responses_api" not in accepted.settings.chain[0].params  # kept in config, never sent
    assert "model_name" not in accepted.settings.chain[0].params


async def test_llm_config_drives_dispatch(replay: ReplayServer) -> None:
    base = replay.openai_base(PLAIN)
    llm = LiteLLMModel(
        llm_config={"name": "gpt-4o-mini", "api_base": base, "temperature": 0.3, "max_retries": 0}
    )
    assert llm.name == "gpt-4o-mini"
    assert isinstance(llm.llm_config, LLMConfig)
    await llm.call(QUESTION)
    sent = replay.requests_for(PLAIN)[0].body
    assert (sent["model"], sent["temperature"]) == ("gpt-4o-mini", 0.3)
    typed = LiteLLMModel(llm_config=LLMConfig(models=[ModelSpec(name="gpt-4o-mini", api_base=base)]))
    assert typed.llm_config is not None
    assert typed.llm_config.models[0].api_base == base


def test_llm_config_and_config_that_disagree_are_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"config and llm_config disagree.*gpt-4o.*claude"):
        LiteLLMModel(config={"name": "gpt-4o"}, llm_config={"name": "claude-haiku-4-5-20251001"})
    with pytest.raises(ValidationError, match=r"temperature: config 0.1 vs llm_config 0.9"):
        LiteLLMModel(config={"temperature": 0.1}, llm_config={"name": "gpt-4o", "temperature": 0.9})
    # Limits beside an llm_config are fine, and so is a config that says the same thing.
    llm = LiteLLMModel(
        config={"rate_limit": {"gpt-4o": "100/minute"}}, llm_config={"name": "gpt-4o", "temperature": 0.1}
    )
    assert llm.settings.rate_limit == {"gpt-4o": "100/minute"}
    same = LiteLLMModel(**llm.model_dump())
    assert [d.params for d in same.settings.chain] == [d.params for d in llm.settings.chain]


async def test_pickling_round_trips_and_still_calls(replay: ReplayServer) -> None:
    llm = LiteLLMModel(
        config={"name": "gpt-4o-mini", "api_base": replay.openai_base(PLAIN), "temperature": 0}
    )
    copy = pickle.loads(pickle.dumps(llm))
    assert (copy.name, copy.config, copy.llm_config) == (llm.name, llm.config, llm.llm_config)
    result = await copy.call_single(QUESTION)
    assert result.text == recorded(PLAIN)["body"]["choices"][0]["message"]["content"]


def test_provider_and_count_tokens() -> None:
    assert LiteLLMModel(name="claude-haiku-4-5-20251001").provider == "anthropic"
    assert LiteLLMModel().provider == "openai"
    text = "The quick brown fox jumps over the lazy dog."
    assert LiteLLMModel().count_tokens(text) == litellm.token_counter(model="gpt-4o-2024-11-20", text=text)


async def test_check_rate_and_request_limits() -> None:
    name = "compat-limits-test-model"  # a key no other test charges
    llm = LiteLLMModel(
        name=name,
        config={"name": name, "rate_limit": {name: "1000/minute"}, "request_limit": {name: "5/minute"}},
    )
    await llm.check_rate_limit(250.7)
    await llm.check_request_limit()
    status = await GLOBAL_LIMITER.rate_limit_status()
    assert status[("client", name)]["n_items_in_period"] == 250
    assert status[("client|request", name)]["n_items_in_period"] == 1
    await LiteLLMModel(name="gpt-4o").check_rate_limit(10)  # nothing configured: nothing charged
    assert ("client", "gpt-4o") not in await GLOBAL_LIMITER.rate_limit_status()


async def test_custom_tool_parsers(replay: ReplayServer) -> None:
    seen: list[Any] = []

    def from_text(text: str, tools: Any) -> ToolRequestMessage:
        seen.append(text)
        return ToolRequestMessage(content=text.upper(), tool_calls=[])

    # fhlmi hands the text only to parsers annotated with the str class itself; this module's
    # `from __future__ import annotations` makes it the string "str", so set the class as a user's would be.
    from_text.__annotations__["text"] = str

    def from_choice(choice, tools):  # type: ignore[no-untyped-def]  # no annotation: gets the Choices
        seen.append(choice)
        return [Message(role="assistant", content="parsed")]

    answer = recorded(PLAIN)["body"]["choices"][0]["message"]["content"]
    base = replay.openai_base(PLAIN)
    result = await LiteLLMModel(
        config={"name": "gpt-4o-mini", "api_base": base}, tool_parser=from_text
    ).call_single(QUESTION)
    assert seen == [answer]
    assert result.messages[0].content == answer.upper()
    result = await LiteLLMModel(
        config={"name": "gpt-4o-mini", "api_base": base, "tool_parser": from_choice}
    ).call_single(QUESTION)
    assert isinstance(seen[1], litellm.Choices)
    assert seen[1].message.content == answer
    assert result.messages[0].content == "parsed"


def _refusal_body() -> str:
    body = recorded(PLAIN)["body"]
    body["choices"][0]["finish_reason"] = "content_filter"
    return json.dumps(body)


async def test_content_filter_is_a_refusal_that_falls_back(replay: ReplayServer) -> None:
    base = replay.openai_base(PLAIN)
    replay.inject(PLAIN, Fault(status=200, body=_refusal_body(), times=None))
    single = LiteLLMModel(config={"name": "gpt-4o-mini", "api_base": base})
    with pytest.raises(AllModelsExhaustedError) as raised:
        await single.call_single(QUESTION)
    refusal = raised.value.last_exc
    assert isinstance(refusal, ModelRefusalError)
    assert (refusal.model, refusal.finish_reason) == ("gpt-4o-mini", "content_filter")
    assert isinstance(refusal.response, litellm.ModelResponse)
    assert len(replay.requests_for(PLAIN)) == 1  # a refusal is not retried on the same model
    replay.clear()
    replay.inject(PLAIN, Fault(status=200, body=_refusal_body(), times=1))
    chain = LiteLLMModel(
        config={
            "model_list": [
                {"model_name": "primary", "litellm_params": {"model": "gpt-4o-mini", "api_base": base}},
                {"model_name": "backup", "litellm_params": {"model": "gpt-4o-mini", "api_base": base}},
            ],
            "fallbacks": [{"primary": ["backup"]}],
        }
    )
    result = await chain.call_single(QUESTION)
    assert (result.model, result.finish_reason) == ("backup", "stop")


async def test_response_validator_rejections_are_retried(replay: ReplayServer) -> None:
    calls: list[str] = []

    async def validator(result: Any) -> None:
        calls.append(result.text)
        if len(calls) == 1:
            raise ValueError("not good enough")

    base = replay.openai_base(PLAIN)
    config = LLMConfig(models=[ModelSpec(name="gpt-4o-mini", api_base=base)], response_validator=validator)
    llm = LiteLLMModel(llm_config=config, config={"retry_backoff": 0.01})
    result = await llm.call_single(QUESTION)
    assert len(calls) == 2
    assert len(replay.requests_for(PLAIN)) == 2
    assert result.text == calls[1]
    always = LLMConfig(
        models=[ModelSpec(name="gpt-4o-mini", api_base=base, max_retries=1)],
        response_validator=lambda r: (_ for _ in ()).throw(ValueError("never")),
    )
    with pytest.raises(AllModelsExhaustedError) as raised:
        await LiteLLMModel(llm_config=always, config={"retry_backoff": 0.01}).call_single(QUESTION)
    assert isinstance(raised.value.last_exc, ResponseValidationError)


async def test_acompletion_with_a_spec_is_one_request_to_it(replay: ReplayServer) -> None:
    replay.inject(PLAIN, Fault(status=503, times=None))
    llm = LiteLLMModel(name="gpt-4o-mini")
    spec = ModelSpec(name="gpt-4o-mini", api_base=replay.openai_base(PLAIN), max_retries=3)
    with pytest.raises(litellm.ServiceUnavailableError):
        await llm.acompletion(QUESTION, spec=spec)
    assert len(replay.requests_for(PLAIN)) == 1
    replay.clear()
    (result,) = await llm.acompletion(QUESTION, spec=spec)
    assert result.text == recorded(PLAIN)["body"]["choices"][0]["message"]["content"]


def test_normalised_config_with_a_provider_key_builds_again_and_strays_are_refused() -> None:
    flat = LiteLLMModel(config={"name": "vertex_ai/gemini-2.0-flash", "vertex_project": "p1"})
    again = LiteLLMModel(config=flat.config)
    assert again.settings.chain[0].params["vertex_project"] == "p1"
    router = {"model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o-mini"}}]}
    with pytest.raises(ValidationError, match="vertex_project"):
        LiteLLMModel(config={**router, "vertex_project": "p1"})  # beside a model_list it names nothing
    with pytest.raises(ValidationError):
        LiteLLMModel(config=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_refusals_and_choice_parsers_look_the_same_on_both_transports(
    replay: ReplayServer, transport: str
) -> None:
    body = recorded(PLAIN)["body"]
    base = replay.openai_base(PLAIN)
    replay.inject(PLAIN, Fault(status=200, body=_refusal_body(), times=1))
    llm = LiteLLMModel(config={"name": "gpt-4o-mini", "api_base": base, "transport": transport})
    with pytest.raises(AllModelsExhaustedError) as raised:
        await llm.call_single(QUESTION)
    response = raised.value.last_exc.response  # type: ignore[union-attr]
    assert isinstance(response, litellm.ModelResponse)
    assert response.id == body["id"]
    assert response.choices[0].finish_reason == "content_filter"
    assert response.choices[0].message.content == body["choices"][0]["message"]["content"]
    assert response.usage.prompt_tokens == body["usage"]["prompt_tokens"]

    seen: list[Any] = []

    def from_choice(choice, tools):  # type: ignore[no-untyped-def]
        seen.append(choice)
        return Message(role="assistant", content="parsed")

    parsed = LiteLLMModel(
        config={"name": "gpt-4o-mini", "api_base": base, "transport": transport}, tool_parser=from_choice
    )
    result = await parsed.call_single(QUESTION)
    (choice,) = seen
    assert isinstance(choice, litellm.Choices)
    assert (choice.index, choice.finish_reason) == (0, body["choices"][0]["finish_reason"])
    assert choice.message.content == body["choices"][0]["message"]["content"]
    assert result.messages == [Message(role="assistant", content="parsed")]


async def test_a_pickled_model_with_a_cache_and_a_transport_calls_again(
    replay: ReplayServer, tmp_path: Any
) -> None:
    base = replay.openai_base(PLAIN)
    config = {"name": "gpt-4o-mini", "api_base": base, "transport": "native", "cache": str(tmp_path / "c.db")}
    llm = LiteLLMModel(config=config)
    first = await llm.call_single(QUESTION)
    copy = pickle.loads(pickle.dumps(llm))
    again = await copy.call_single(QUESTION)
    assert (again.text, again.cache_hit) == (first.text, True)  # the copy reads the same cache file
    assert len(replay.requests_for(PLAIN)) == 1


@pytest.mark.parametrize(
    "model_list", ["gpt-4o", {"model_name": "gpt-4o", "litellm_params": {"model": "gpt-4o"}}]
)
def test_a_model_list_that_is_not_a_list_is_a_type_error(model_list: Any) -> None:
    with pytest.raises(TypeError, match="model_list"):
        LiteLLMModel(config={"model_list": model_list})


def test_flat_logprobs_are_dropped_with_a_warning_for_a_model_litellm_does_not_place_at_openai() -> None:
    with pytest.warns(UserWarning, match="logprobs"):
        llm = LiteLLMModel(
            config={"name": CommonLLMNames.CLAUDE_45_HAIKU.value, "logprobs": True, "top_logprobs": 3}
        )
    sent = llm.config["model_list"][0]["litellm_params"]
    assert not {"logprobs", "top_logprobs"} & sent.keys()
    assert "logprobs" not in llm.llm_config.models[0].extra_params
    openai = LiteLLMModel(config={"name": CommonLLMNames.GPT_4O.value, "logprobs": True, "top_logprobs": 3})
    assert openai.config["model_list"][0]["litellm_params"]["top_logprobs"] == 3
    # An explicit spec is still refused: there the caller asked for that model's logprobs by name.
    with pytest.raises(ValidationError, match="logprobs"):
        ModelSpec(name=CommonLLMNames.CLAUDE_45_HAIKU.value, extra_params={"logprobs": True})


async def test_a_streamed_content_filter_is_the_chains_refusal_too(replay: ReplayServer) -> None:
    """Streamed, the text already reached the callbacks, so nothing is retried, but the error is the same
    as unstreamed: AllModelsExhaustedError whose last_exc is the ModelRefusalError."""
    stream = "openai-chat-stream-29f559"
    refused = Fault(
        replay=True,
        rewrite=lambda sse: sse.replace('"finish_reason":"stop"', '"finish_reason":"content_filter"'),
        times=None,
    )
    replay.inject(stream, refused)
    llm = LiteLLMModel(config={"name": "gpt-4o-mini", "api_base": replay.openai_base(stream)})
    deltas: list[str] = []
    with pytest.raises(AllModelsExhaustedError) as raised:
        await llm.call_single("Say hello", callbacks=[deltas.append])
    refusal = raised.value.last_exc
    assert isinstance(refusal, ModelRefusalError)
    assert refusal.finish_reason == "content_filter"
    assert raised.value.__cause__ is refusal
    assert deltas  # the text was streamed before the refusal showed
    assert len(replay.requests_for(stream)) == 1
