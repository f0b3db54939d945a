"""Request shapes no recording holds: with transport="auto", OpenAI servers receive the body litellm sends
(natively where the codec can, through litellm where litellm rewrites or refuses the request)."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from aviary.core import Message

from lmi import LiteLLMModel
from tests.llms.helpers import recorded
from tests.replay import Fault, ReplayServer

PLAIN = "openai-chat-0b8092"
TOOLS = recorded("openai-chat-tools-3055a4")["request"]["tools"]
A = {"role": "user", "content": "a"}
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "string"}},
    "required": ["a"],
    "additionalProperties": False,
}
SHAPES: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any]]] = {
    "reasoning model max_tokens": ("openai/o3-mini", [A], {"max_tokens": 50}),
    "gpt-5 max_tokens, effort": ("gpt-5-mini", [A], {"max_tokens": 50, "reasoning_effort": "low"}),
    "o1 with a system message": ("o1", [{"role": "system", "content": "S"}, A], {}),
    "penalties, seed, stop, user": (
        "gpt-4o-mini", [A],
        {"stop": "x", "seed": 3, "logit_bias": {"50256": -100}, "user": "u", "presence_penalty": 0.1},
    ),
    "json schema": (
        "gpt-4o-mini", [A],
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True,
                                                                  "schema": SCHEMA}}},
    ),
    "named tool, no parallel calls": (
        "gpt-4o-mini", [A],
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "double"}},
         "parallel_tool_calls": False},
    ),
    "empty assistant text": ("gpt-4o-mini", [A, {"role": "assistant", "content": ""}, A], {}),
    "custom server, extra sampling": ("openai/llama-3", [A], {"max_tokens": 5, "top_k": 3}),
}  # fmt: skip


async def _body(
    replay: ReplayServer, transport: str, model: str, messages: list[Message], **kwargs: Any
) -> Any:
    replay.clear()
    replay.inject(PLAIN, Fault(status=200, body=json.dumps(recorded(PLAIN)["body"])))
    params = {"model": model, "api_base": replay.openai_base(PLAIN), "api_key": "sk-test"}
    config = {"model_list": [{"model_name": "m", "litellm_params": params}], "transport": transport}
    await LiteLLMModel(name="m", config=config).acompletion(messages, **kwargs)
    return replay.requests_for(PLAIN)[0].body


@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_auto_sends_the_body_litellm_sends(replay: ReplayServer, shape: str) -> None:
    model, messages, kwargs = SHAPES[shape]
    prompt = [Message(**m) for m in messages]
    assert await _body(replay, "auto", model, prompt, **kwargs) == await _body(
        replay, "litellm", model, prompt, **kwargs
    )


@pytest.mark.parametrize("model", ["openai/o3-mini", "gpt-5-mini"])
async def test_a_temperature_litellm_refuses_is_refused_the_same_way(
    replay: ReplayServer, model: str
) -> None:
    errors = []
    for transport in ("litellm", "auto"):
        replay.clear()
        params = {"model": model, "api_base": replay.openai_base(PLAIN), "api_key": "sk-test"}
        config = {"model_list": [{"model_name": "m", "litellm_params": params}], "transport": transport}
        # litellm's refusal is a plain bad request: it reaches the caller as itself (fhlmi's rule)
        with pytest.raises(litellm.UnsupportedParamsError) as raised:
            await LiteLLMModel(name="m", config=config).call_single("a", temperature=0.2)
        errors.append(type(raised.value))
        assert replay.requests_for(PLAIN) == []
    assert errors[0] is errors[1]
