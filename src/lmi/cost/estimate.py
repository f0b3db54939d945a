"""The most a request can cost, before it is sent: what a budget reserves.

Prompt tokens are bounded by the request's UTF-8 bytes (every byte-level BPE token covers at least one
byte) plus a per-message overhead, images by a fixed bound per image; completion tokens by ``max_tokens``
(or ``max_completion_tokens``), else the model's maximum output, per choice. Each is priced at the highest
rate it could be billed at for that size: a cache write when the prompt marks a cache breakpoint,
reasoning or audio when those cost more than text. Server-side tools (web search) are not bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from lmi.cost.pricing import max_output_tokens, model_prices
from lmi.exceptions import BudgetExceeded

MESSAGE_OVERHEAD_TOKENS = 8  # role markers and separators, with margin (OpenAI counts 3-4)
IMAGE_TOKENS_BOUND = 40_000  # a high-detail image on the models that bill images at a multiple
DEFAULT_MAX_OUTPUT_TOKENS = 32_768  # when neither the request nor the price map bounds the answer


def prompt_tokens_bound(request: Mapping[str, Any]) -> int:
    """An upper bound on the prompt tokens ``request`` (a chat completion request) is billed."""
    total = MESSAGE_OVERHEAD_TOKENS
    for message in request.get("messages") or ():
        total += MESSAGE_OVERHEAD_TOKENS + _content_bytes(message)
    for key in ("tools", "response_format", "functions"):
        if request.get(key):
            total += len(json.dumps(request[key], default=str).encode())
    return total


def texts_tokens_bound(texts: Iterable[str]) -> int:
    return sum(len(text.encode()) + 1 for text in texts)


def worst_case_chat_usd(model: str, request: Mapping[str, Any]) -> float:
    """The most ``request`` can cost on ``model``; BudgetExceeded when ``model`` has no price."""
    prices = _prices(model)
    prompt = prompt_tokens_bound(request)
    tier = request.get("service_tier") if isinstance(request.get("service_tier"), str) else None
    rates = prices.rates_for(prompt, tier)
    input_rate = max(rates.input, rates.cache_creation)
    if rates.cache_creation_1h is not None and _mentions(request.get("messages"), "1h"):
        input_rate = max(input_rate, rates.cache_creation_1h)
    output_rate = max(rates.output, rates.reasoning)
    if request.get("modalities") or request.get("audio"):
        output_rate = max(output_rate, rates.audio_output or 0.0)
    choices = request.get("n") or 1
    completion = _max_completion(model, request) * (
        choices if isinstance(choices, int) and choices > 0 else 1
    )
    return prompt * input_rate + completion * output_rate


def worst_case_embedding_usd(model: str, texts: Iterable[str]) -> float:
    prices = _prices(model)
    tokens = texts_tokens_bound(texts)
    return tokens * prices.rates_for(tokens).input


def _prices(model: str) -> Any:
    prices = model_prices(model)
    if prices is None:
        raise BudgetExceeded(
            f"{model!r} has no known price, so no budget can hold it: price it with "
            "lmi.set_model_prices(model, input_per_token=..., output_per_token=...) or config['prices']"
        )
    return prices


def _max_completion(model: str, request: Mapping[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return max_output_tokens(model) or DEFAULT_MAX_OUTPUT_TOKENS


def _content_bytes(message: Any) -> int:
    if isinstance(message, Mapping):
        total = 0
        for key, value in message.items():
            if key in (
                "content",
                "tool_calls",
                "function_call",
                "name",
                "reasoning_content",
                "thinking_blocks",
            ):
                total += _content_bytes(value)
        return total
    if isinstance(message, str):
        return len(message.encode())
    if isinstance(message, list):
        return sum(_part_bytes(part) for part in message)
    return len(json.dumps(message, default=str).encode()) if message is not None else 0


def _part_bytes(part: Any) -> int:
    if isinstance(part, Mapping):
        kind = part.get("type")
        if kind in ("image_url", "image", "input_image", "file", "document", "input_audio"):
            return IMAGE_TOKENS_BOUND
        if isinstance(part.get("text"), str):
            return len(part["text"].encode())
    return _content_bytes(part)


def _mentions(value: Any, needle: str) -> bool:
    """Whether a cache breakpoint with ``ttl == needle`` appears anywhere in the messages."""
    if isinstance(value, Mapping):
        control = value.get("cache_control")
        if isinstance(control, Mapping) and control.get("ttl") == needle:
            return True
        return any(_mentions(v, needle) for v in value.values() if isinstance(v, list | Mapping))
    if isinstance(value, list):
        return any(_mentions(v, needle) for v in value)
    return False
