"""USD cost of one call's billed usage, from litellm's local price map.

A model's prices are resolved once per model name into a small :class:`ModelPrices` (base rates plus
the tiers a long prompt moves into), so pricing a call is a dict lookup and a few multiplications.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmi.types import TokenUsage

logger = logging.getLogger(__name__)

# Tried, in order, before every other provider litellm knows when a bare name is not in the map:
# a bare name most often means the model's own vendor, not a reseller.
_PREFERRED_PROVIDERS = (
    "openai",
    "anthropic",
    "gemini",
    "vertex_ai",
    "mistral",
    "deepseek",
    "xai",
    "groq",
    "cohere",
    "together_ai",
    "fireworks_ai",
    "bedrock",
    "azure",
)
# Providers that bill the higher tier once the prompt *reaches* the threshold rather than exceeds it.
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
_RATE_KEYS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
)
_TIER_KEY = re.compile(rf"^({'|'.join(_RATE_KEYS)})_above_(\d+)(k?)_tokens$")
_NOT_A_MODEL = frozenset({"sample_spec"})


class UnknownModelPriceWarning(UserWarning):
    """A model is missing from litellm's price map, so its calls are counted at $0."""


@dataclass(frozen=True, slots=True)
class TokenRates:
    """USD per token for each kind of billed token, every fallback already applied."""

    input: float
    output: float
    cache_read: float
    cache_creation: float
    reasoning: float


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """A model's rates: ``base``, or the rates of the highest tier whose threshold the prompt crosses."""

    key: str  # the price map entry these came from
    base: TokenRates
    tiers: tuple[tuple[int, TokenRates], ...] = ()  # (prompt-token threshold, rates), highest first
    inclusive_thresholds: bool = False

    def rates_for(self, prompt_tokens: int) -> TokenRates:
        for threshold, rates in self.tiers:
            if prompt_tokens > threshold or (self.inclusive_thresholds and prompt_tokens == threshold):
                return rates
        return self.base

    def cost(self, usage: TokenUsage) -> float:
        rates = self.rates_for(usage.prompt_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        return (
            usage.uncached_prompt_tokens * rates.input
            + usage.cache_read_tokens * rates.cache_read
            + usage.cache_creation_tokens * rates.cache_creation
            + (usage.completion_tokens - reasoning) * rates.output
            + reasoning * rates.reasoning
        )


_resolved: dict[str, ModelPrices | None] = {}
_warned: set[str] = set()  # models already warned about: one warning per model, not per call
_resolve_lock = threading.Lock()


def usage_cost(model: str, usage: TokenUsage) -> float:
    """USD the provider bills for ``usage`` on ``model``; 0.0 (and one warning) for an unpriced model.

    Cached prompt reads and cache writes are priced at their own rates (the input rate when the map
    has none), reasoning tokens at the output rate unless the map prices them apart, and a prompt
    longer than a tier threshold (``*_above_200k_tokens``) moves every token to that tier's rates.
    """
    try:
        prices = _resolved.get(model) or model_prices(model)
        if prices is not None:
            return prices.cost(usage)
    except Exception:  # pricing must never break the call it prices
        logger.exception("Could not price a call to %r", model)
        return 0.0
    _warn_unpriced(model)
    return 0.0


def model_prices(model: str) -> ModelPrices | None:
    """The resolved rates for ``model`` (cached per name), or None when litellm has no price for it."""
    try:
        return _resolved[model]
    except KeyError:
        pass
    with _resolve_lock:
        if model not in _resolved:
            _resolved[model] = _resolve(model)
    return _resolved[model]


def price_entry(model: str) -> dict[str, Any] | None:
    """litellm's raw price map entry for ``model`` (after name resolution), or None."""
    prices = model_prices(model)
    if prices is None:
        return None
    entry: dict[str, Any] = _price_map()[prices.key]
    return entry


def clear_price_cache() -> None:
    """Forget resolved prices, e.g. after ``litellm.register_model`` changed the map."""
    with _resolve_lock:
        _resolved.clear()
        _warned.clear()


def _price_map() -> dict[str, Any]:
    from lmi._lazy import litellm

    cost_map: dict[str, Any] = litellm().model_cost
    return cost_map


def _resolve(model: str) -> ModelPrices | None:
    try:
        cost_map = _price_map()
        for key in _candidate_keys(model, cost_map):
            entry = cost_map.get(key)
            if isinstance(entry, Mapping) and _has_token_prices(entry):
                return _prices_from_entry(key, entry)
    except Exception:  # a malformed map must not break a call
        logger.exception("Could not read litellm's prices for %r", model)
    return None


def _warn_unpriced(model: str) -> None:
    if model in _warned:
        return
    with _resolve_lock:
        if model in _warned:
            return
        _warned.add(model)
    warnings.warn(
        f"No price for model {model!r} in litellm's price map; its calls are counted as $0.",
        UnknownModelPriceWarning,
        stacklevel=3,
    )


def _candidate_keys(model: str, cost_map: Mapping[str, Any]) -> list[str]:
    if model in _NOT_A_MODEL or not model:
        return []
    keys = [model]
    if "/" in model:  # "openai/gpt-4o" -> "gpt-4o"; "openrouter/openai/gpt-4o" -> "openai/gpt-4o", ...
        parts = model.split("/")
        keys.extend("/".join(parts[i:]) for i in range(1, len(parts)))
        return keys
    from lmi._lazy import litellm

    known = [getattr(p, "value", str(p)) for p in getattr(litellm(), "provider_list", [])]
    for prefix in dict.fromkeys([*_PREFERRED_PROVIDERS, *known]):
        candidate = f"{prefix}/{model}"
        if candidate in cost_map:
            keys.append(candidate)
            break
    return keys


def _has_token_prices(entry: Mapping[str, Any]) -> bool:
    token_prices = (entry.get("input_cost_per_token"), entry.get("output_cost_per_token"))
    return any(price is not None for price in token_prices) or bool(entry.get("tiered_pricing"))


def _rate(entry: Mapping[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    return float(value)


def _prices_from_entry(key: str, entry: Mapping[str, Any]) -> ModelPrices:
    explicit = {name: _rate(entry, name) for name in _RATE_KEYS}
    base = _complete(explicit, output_fallback=0.0)
    tiers: list[tuple[int, TokenRates]] = []

    # `*_above_<N>k_tokens` keys: each rate at a tier is its own key, else the rate one tier down.
    thresholds: dict[int, dict[str, float]] = {}
    for name, value in entry.items():
        match = _TIER_KEY.match(name)
        if match and value is not None:
            threshold = int(match[2]) * (1000 if match[3] else 1)
            thresholds.setdefault(threshold, {})[match[1]] = float(value)
    running = dict(explicit)
    for threshold in sorted(thresholds):
        running.update(thresholds[threshold])
        tiers.append((threshold, _complete(running, output_fallback=0.0)))

    # A `tiered_pricing` table: one tier per input range, every token billed at that tier's rates.
    table = entry.get("tiered_pricing")
    model_output_rate = base.output
    if isinstance(table, list):
        for tier in table:
            tier_range = tier.get("range") if isinstance(tier, Mapping) else None
            if not tier_range or tier.get("input_cost_per_token") is None:
                continue
            rates = _complete(
                {name: _rate(tier, name) for name in _RATE_KEYS}, output_fallback=model_output_rate
            )
            low = int(float(tier_range[0]))
            if low <= 0:
                base = rates
            else:
                tiers.append((low, rates))

    tiers.sort(key=lambda item: item[0], reverse=True)
    return ModelPrices(
        key=key,
        base=base,
        tiers=tuple(tiers),
        inclusive_thresholds=entry.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS,
    )


def _complete(rates: Mapping[str, float | None], *, output_fallback: float) -> TokenRates:
    """Fill absent rates the way providers bill: cache tokens as input, reasoning as output."""
    input_rate = rates["input_cost_per_token"] or 0.0
    output_rate = rates["output_cost_per_token"]
    output_rate = output_fallback if output_rate is None else output_rate
    cache_read = rates["cache_read_input_token_cost"]
    cache_creation = rates["cache_creation_input_token_cost"]
    reasoning = rates["output_cost_per_reasoning_token"]
    return TokenRates(
        input=input_rate,
        output=output_rate,
        cache_read=input_rate if cache_read is None else cache_read,
        cache_creation=input_rate if cache_creation is None else cache_creation,
        reasoning=output_rate if reasoning is None else reasoning,
    )
