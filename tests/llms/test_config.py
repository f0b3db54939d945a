"""Config shapes and the errors for bad ones."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lmi import LiteLLMModel, LLMModel
from lmi.llms.config import DEFAULT_MODEL


def test_default_model() -> None:
    llm = LiteLLMModel()
    assert llm.name == DEFAULT_MODEL
    assert [d.model for d in llm.settings.chain] == [DEFAULT_MODEL]


def test_router_shape_params_and_fallbacks() -> None:
    config = {
        "model_list": [
            {"model_name": "gpt-4o", "litellm_params": {"model": "gpt-4o", "temperature": 0.1, "n": 5}},
            {"model_name": "claude", "litellm_params": {"model": "claude-haiku-4-5-20251001"}},
        ],
        "fallbacks": [{"gpt-4o": ["claude", "gpt-4o-mini"]}],
        "router_kwargs": {"num_retries": 2, "timeout": 30},
    }
    llm = LiteLLMModel(name="gpt-4o", config=config)
    assert [d.name for d in llm.settings.chain] == ["gpt-4o", "claude", "gpt-4o-mini"]
    assert llm.settings.deployments["gpt-4o"].params["temperature"] == 0.1
    assert llm.settings.n == 5
    assert llm.settings.retry.num_retries == 2
    assert llm.settings.timeout == 30


def test_name_defaults_to_first_model_in_list() -> None:
    llm = LiteLLMModel(config={"model_list": [{"model_name": "m1", "litellm_params": {"model": "gpt-4o"}}]})
    assert llm.name == "m1"


def test_flat_shape_name_sets_model() -> None:
    llm = LiteLLMModel(config={"name": "gpt-4o", "temperature": 0.1, "max_tokens": 512, "n": 5})
    assert llm.name == "gpt-4o"
    assert dict(llm.settings.deployments["gpt-4o"].params) == {
        "model": "gpt-4o",
        "temperature": 0.1,
        "max_tokens": 512,
        "n": 5,
    }


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"temprature": 0.1}, "temprature"),
        ({"model_list": [{"model_name": "a", "litellm_params": {}}], "fallback": []}, "fallback"),
        ({"model_list": [{"model_nme": "a"}]}, "model_nme"),
        (
            {"model_list": [{"model_name": "a", "litellm_params": {}}], "router_kwargs": {"num_retry": 1}},
            "num_retry",
        ),
        ({"model_list": []}, "model_list"),
        ({"model_list": [{"litellm_params": {}}]}, "model_name"),
        ({"model_list": [{"model_name": "a", "litellm_params": "x"}]}, "litellm_params"),
        ({"num_retries": -1}, "num_retries"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_bad_config_names_the_key(config: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        LiteLLMModel(config=config)


def test_name_missing_from_model_list() -> None:
    config = {"model_list": [{"model_name": "a", "litellm_params": {"model": "gpt-4o"}}]}
    with pytest.raises(ValidationError, match="'b' is not in config"):
        LiteLLMModel(name="b", config=config)


def test_repr_hides_api_key() -> None:
    secret = "sk-very-secret-value-123"
    llm = LiteLLMModel(config={"name": "gpt-4o", "api_key": secret})
    assert secret not in repr(llm)
    assert secret not in str(llm)


async def test_empty_messages_rejected() -> None:
    llm = LiteLLMModel()
    with pytest.raises(ValueError, match="empty"):
        await llm.call([])
    with pytest.raises(ValueError, match="empty"):
        await llm.call("")


async def test_bad_tool_choice_and_output_type() -> None:
    llm = LiteLLMModel()
    with pytest.raises(TypeError, match="output_type"):
        await llm.call("hi", output_type=int)  # type: ignore[arg-type]


async def test_callbacks_with_n_above_one_rejected() -> None:
    with pytest.raises(ValueError, match="n=1"):
        await LiteLLMModel().call("hi", callbacks=[print], n=2)


def test_llm_model_is_abstract() -> None:
    with pytest.raises(TypeError):
        LLMModel()  # type: ignore[abstract]
