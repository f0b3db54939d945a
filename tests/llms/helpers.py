"""Building models that talk to the replay server, and reading what a recording holds."""

from __future__ import annotations

import json
from typing import Any

from lmi import LiteLLMModel
from tests.replay import ReplayServer, load_recording


def openai_model(
    replay: ReplayServer, recording: str, model: str = "gpt-4o-mini", **params: Any
) -> LiteLLMModel:
    params = {"model": model, "api_base": replay.openai_base(recording), **params}
    return LiteLLMModel(name=model, config={"model_list": [{"model_name": model, "litellm_params": params}]})


def anthropic_model(replay: ReplayServer, recording: str, model: str, **params: Any) -> LiteLLMModel:
    params = {"model": model, "api_base": replay.anthropic_base(recording), **params}
    return LiteLLMModel(name=model, config={"model_list": [{"model_name": model, "litellm_params": params}]})


def recorded(name: str, index: int = 0) -> dict[str, Any]:
    """One recorded exchange with its response body parsed (JSON) or kept as SSE text."""
    exchange = dict(load_recording(name)[index])
    if exchange["content_type"].startswith("application/json"):
        exchange["body"] = json.loads(exchange["response"])
    return exchange


def sse_events(exchange: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    for line in exchange["response"].splitlines():
        if line.startswith("data:") and line.strip() != "data: [DONE]":
            events.append(json.loads(line[len("data:") :]))
    return events


def warm_litellm(replay: ReplayServer) -> None:
    """One plain and one streamed call through litellm, for tests that time short timeouts.

    litellm's first call of each kind in a process spends a second or more of CPU (lazy imports, pydantic
    schemas, tokenizer loading) inside the attempt, where a timeout of a second would count it.
    """
    import asyncio

    from tests.reliability.helpers import PRIMARY, STREAM, chat_config

    async def warm() -> None:
        await LiteLLMModel(config=chat_config(replay.openai_base(PRIMARY))).call_single("Warm up")
        streamer = LiteLLMModel(config=chat_config(replay.openai_base(STREAM)))
        await streamer.call_single("Say hello", callbacks=[lambda _: None])

    asyncio.run(warm())
