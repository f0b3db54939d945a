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
