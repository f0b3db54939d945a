"""Embedding models pointed at the replay server, and what the embedding recordings hold."""

from __future__ import annotations

import json
from typing import Any

from lmi import LiteLLMEmbeddingModel
from tests.replay import ReplayServer, load_recording


def replayed_model(replay: ReplayServer, recording: str, **fields: Any) -> LiteLLMEmbeddingModel:
    config = fields.pop("config", {})
    kwargs = {"api_base": replay.openai_base(recording), "api_key": "sk-test-not-a-real-key"}
    return LiteLLMEmbeddingModel(
        config={**config, "kwargs": {**kwargs, **config.get("kwargs", {})}}, **fields
    )


def recorded_exchange(recording: str, inputs: list[str]) -> dict[str, Any]:
    """The recorded exchange whose request carried exactly ``inputs``, its response body parsed."""
    for exchange in load_recording(recording):
        if exchange["request"]["input"] == inputs:
            return {**exchange, "body": json.loads(exchange["response"])}
    raise LookupError(f"{recording} holds no request for {inputs}")


def recorded_vectors(recording: str, inputs: list[str]) -> list[list[float]]:
    data = sorted(recorded_exchange(recording, inputs)["body"]["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


def recorded_prompt_tokens(recording: str, inputs: list[str]) -> int:
    tokens: int = recorded_exchange(recording, inputs)["body"]["usage"]["prompt_tokens"]
    return tokens
