"""The GenAI semantic conventions' names and values for lmi's calls: providers, request and response.

Kept apart from :mod:`lmi.telemetry` (which decides whether and where to record) so that the mapping
from an lmi call to convention attributes reads in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmi.types import LLMResult

# litellm's provider names → the conventions' well-known gen_ai.provider.name values.
_PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
# Request parameters → their span attributes.
_REQUEST_ATTRIBUTES = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}


@cache
def provider_name(model: str, custom_provider: str | None = None) -> str:
    """``gen_ai.provider.name`` for a litellm model string (``anthropic/claude-...``, ``gpt-4o``)."""
    provider = custom_provider
    if not provider:
        try:
            from lmi._lazy import litellm

            provider = litellm().get_llm_provider(model)[1]
        except Exception:
            provider = model.split("/", 1)[0] if "/" in model else "unknown"
    return _PROVIDER_NAMES.get(provider, provider)


def request_attributes(params: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, attribute in _REQUEST_ATTRIBUTES.items():
        value = params.get(key)
        # The conventions record a choice count only when it is not 1.
        if isinstance(value, int | float) and not isinstance(value, bool) and (key != "n" or value != 1):
            attributes[attribute] = value
    stop = params.get("stop")
    if stop:
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return attributes


def response_attributes(
    results: Sequence[LLMResult],
    input_tokens: int,
    output_tokens: int,
    cost: float,
    response_model: str | None,
    with_content: bool,
) -> dict[str, Any]:
    """A finished chat call's span attributes; prompts and completions only ``with_content``."""
    first = results[0] if results else None
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.usage.cache_read.input_tokens": sum(r.cache_read_tokens for r in results),
        "gen_ai.usage.cache_creation.input_tokens": sum(r.cache_creation_tokens for r in results),
        "gen_ai.response.finish_reasons": [r.finish_reason for r in results if r.finish_reason],
        "lmi.cost_usd": cost,
        "lmi.cache_hit": bool(getattr(first, "cache_hit", False)),
    }
    if response_model:
        attributes["gen_ai.response.model"] = response_model
    if first is not None and first.provider_response_id:
        attributes["gen_ai.response.id"] = first.provider_response_id
    if first is not None and with_content:
        attributes["gen_ai.input.messages"] = json.dumps([_message_json(m) for m in first.prompt or ()])
        attributes["gen_ai.output.messages"] = json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": r.text or ""}],
                    "finish_reason": r.finish_reason or "",
                }
                for r in results
            ]
        )
    return attributes


def _message_json(message: Any) -> dict[str, Any]:
    content = getattr(message, "content", None)
    return {"role": getattr(message, "role", "user"), "parts": [{"type": "text", "content": content or ""}]}
