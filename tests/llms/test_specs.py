"""lmi.config's ModelSpec and LLMConfig, as fhlmi code builds and reads them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from lmi.config import LLMConfig, ModelSpec
from lmi.constants import DEFAULT_VERTEX_SAFETY_SETTINGS


def test_model_spec_defaults_and_kwargs() -> None:
    spec = ModelSpec(name="gpt-4o")
    assert (
        spec.api_base,
        spec.api_key,
        spec.timeout,
        spec.max_retries,
        spec.extra_params,
        spec.responses_api,
    ) == (
        None,
        None,
        60.0,
        3,
        {},
        False,
    )
    assert spec.to_litellm_kwargs() == {"model": "gpt-4o", "timeout": 60.0}
    full = ModelSpec(
        name="gpt-4o",
        api_base="http://h",
        api_key=SecretStr("k"),
        timeout=None,
        extra_params={"temperature": 0.1, "num_retries": 2, "max_retries": 2, "tool_parser": print},
    )
    assert full.to_litellm_kwargs() == {
        "model": "gpt-4o",
        "temperature": 0.1,
        "api_base": "http://h",
        "api_key": "k",
    }
    with pytest.raises(ValidationError, match="bogus"):
        ModelSpec(name="gpt-4o", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ModelSpec(name="gpt-4o", max_retries=-1)


def test_logprobs_only_for_models_that_have_them() -> None:
    ModelSpec(name="gpt-4o-mini", extra_params={"logprobs": True, "top_logprobs": 3})
    with pytest.raises(ValidationError, match="logprobs"):
        ModelSpec(name="claude-haiku-4-5-20251001", extra_params={"logprobs": True})


def test_from_name() -> None:
    spec = ModelSpec.from_name("gpt-4o", temperature=0.2, timeout=5.0, extra_params={"temperature": 0.9})
    assert spec.timeout == 5.0
    assert spec.extra_params == {"temperature": 0.9}  # explicit extra_params win over loose keys
    gemini = ModelSpec.from_name("gemini/gemini-2.0-flash")
    assert gemini.extra_params["safety_settings"] == DEFAULT_VERTEX_SAFETY_SETTINGS


def test_from_legacy_params() -> None:
    spec = ModelSpec.from_legacy_params(
        {"model": "gpt-4o", "api_base": "http://h", "temperature": 0.0}, {"timeout": 12.0, "num_retries": 1}
    )
    assert (spec.name, spec.api_base, spec.timeout, spec.max_retries) == ("gpt-4o", "http://h", 12.0, 1)
    assert spec.extra_params == {"temperature": 0.0}
    own = ModelSpec.from_legacy_params({"model": "m", "timeout": 3.0, "max_retries": 0}, {"timeout": 9.0})
    assert (own.timeout, own.max_retries) == (3.0, 0)


def _entry(name: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"{name}-model", **params}}


def test_from_legacy_dict_orders_primary_fallbacks_then_the_rest() -> None:
    legacy = {
        "model_list": [_entry("a"), _entry("b"), _entry("c", temperature=0.5)],
        "fallbacks": [{"a": ["c"]}, {"b": ["a"]}],
        "router_kwargs": {"num_retries": 2},
    }
    config = LLMConfig.from_legacy_dict(legacy)
    assert [m.name for m in config.models] == ["a-model", "c-model", "b-model"]
    assert config.models[1].extra_params == {"temperature": 0.5}
    assert {m.max_retries for m in config.models} == {2}
    with pytest.raises(ValueError, match="model_list"):
        LLMConfig.from_legacy_dict({"model_list": []})
    with pytest.raises(ValueError, match="'z'"):
        LLMConfig.from_legacy_dict({"model_list": [_entry("a")], "fallbacks": [{"a": ["z"]}]})


def test_coercion_and_extra_params() -> None:
    spec = ModelSpec(name="gpt-4o")
    assert LLMConfig.coerce(LLMConfig(models=[spec])).models == [spec]
    assert LLMConfig.coerce({"models": [{"name": "gpt-4o"}]}).models[0].name == "gpt-4o"
    assert LLMConfig.coerce({"model_list": [_entry("a")]}).models[0].name == "a-model"

    def parser(choice: Any, tools: Any) -> None:
        return None

    named = LLMConfig.coerce({"name": "gpt-4o", "temperature": 0.3, "tool_parser": parser})
    assert named.tool_parser is parser
    assert named.models[0].extra_params == {"temperature": 0.3}
    with pytest.raises(TypeError):
        LLMConfig.coerce(["gpt-4o"])
    with pytest.raises(ValueError, match="models"):
        LLMConfig.coerce({"temperature": 0.1})
    with pytest.raises(ValidationError):
        LLMConfig(models=[])
    wider = named.with_extra_params(seed=7)
    assert wider.models[0].extra_params == {"temperature": 0.3, "seed": 7}
    assert named.models[0].extra_params == {"temperature": 0.3}  # a copy
    assert "tool_parser" not in named.model_dump()
    assert "response_validator" not in named.model_dump()
