"""config["transport"]: which deployments go native, which through litellm, and what is refused."""

from __future__ import annotations

import pytest

from lmi import LiteLLMModel
from lmi.llms.transports import LITELLM_ROUTE, wire_format
from tests.llms.helpers import openai_model
from tests.replay import ReplayServer


@pytest.mark.parametrize(
    ("params", "wire"),
    [
        ({"model": "gpt-4o-mini"}, "openai"),
        ({"model": "o3-mini"}, "openai"),
        ({"model": "openai/llama-3-8b", "api_base": "http://127.0.0.1:1/v1"}, "openai"),
        ({"model": "llama3", "custom_llm_provider": "openai"}, "openai"),
        ({"model": "claude-sonnet-4-5-20250929"}, "anthropic"),
        ({"model": "anthropic/claude-haiku-4-5-20251001"}, "anthropic"),
        ({"model": "azure/gpt-4o"}, None),
        ({"model": "bedrock/anthropic.claude-3-5-sonnet"}, None),
        ({"model": "gemini/gemini-2.0-flash"}, None),
        ({"model": "text-embedding-3-small", "custom_llm_provider": "cohere"}, None),
    ],
)
def test_wire_format(params: dict, wire: str | None) -> None:
    assert wire_format(params) == wire


def _routes(llm: LiteLLMModel) -> list:
    return [llm._routes[id(d)] for d in llm.settings.chain]


def test_auto_sends_openai_natively_and_azure_through_litellm() -> None:
    config = {
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "gpt-4o-mini"}},
            {"model_name": "b", "litellm_params": {"model": "azure/gpt-4o", "api_version": "2024-06-01"}},
        ],
        "fallbacks": [{"a": ["b"]}],
    }
    native, litellm_route = _routes(LiteLLMModel(name="a", config=config))
    assert native.native is not None
    assert not native.forced
    assert litellm_route is LITELLM_ROUTE


def test_per_deployment_transport_overrides_the_model_wide_one() -> None:
    config = {
        "transport": "litellm",
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "gpt-4o-mini", "transport": "native"}},
            {"model_name": "b", "litellm_params": {"model": "gpt-4o"}},
        ],
        "fallbacks": [{"a": ["b"]}],
    }
    llm = LiteLLMModel(name="a", config=config)
    first, second = _routes(llm)
    assert first.forced
    assert second is LITELLM_ROUTE
    assert "transport" not in llm.settings.deployments["a"].params  # never sent to a provider


def test_native_refuses_a_provider_it_cannot_speak() -> None:
    with pytest.raises(ValueError, match=r"native.*'vertex_ai/gemini-pro'"):
        LiteLLMModel(name="vertex_ai/gemini-pro", config={"transport": "native"})


def test_native_refuses_a_parameter_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="api_version"):
        LiteLLMModel(name="gpt-4o", config={"transport": "native", "api_version": "2024-01-01"})


def test_unknown_transport_and_bad_pool_size_are_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        LiteLLMModel(config={"transport": "fast"})
    with pytest.raises(ValueError, match="max_connections"):
        LiteLLMModel(config={"max_connections": 0})


async def test_auto_sends_an_unknown_call_parameter_through_litellm(replay: ReplayServer) -> None:
    """A per-call parameter the native codec does not know is litellm's job, not an error."""
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=56)
    route = _routes(llm)[0]
    transport, _ = route.pick(
        llm.settings.chain[0], {"model": "gpt-4o-mini", "messages": [], "drop_params": True}
    )
    assert transport is not route.native


async def test_native_names_the_parameter_it_cannot_send(replay: ReplayServer) -> None:
    llm = openai_model(replay, "openai-chat-0b8092", transport="native")
    with pytest.raises(ValueError, match="'drop_params'"):
        await llm.call_single("hi", drop_params=True)
    assert replay.requests_for("openai-chat-0b8092") == []


async def test_os_environ_references_are_read_as_litellm_reads_them(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMI_TEST_KEY", "sk-from-the-environment")
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=56, api_key="os.environ/LMI_TEST_KEY")
    await llm.call_single("hi")
    (sent,) = replay.requests_for("openai-chat-0b8092")
    assert {k.lower(): v for k, v in sent.headers.items()}[
        "authorization"
    ] == "Bearer sk-from-the-environment"
