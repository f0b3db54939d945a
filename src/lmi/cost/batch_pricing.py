"""Prices of batch API calls (OpenAI Batch, Anthropic Message Batches).

Providers bill batch work at its own rates, which litellm's price map lists as ``*_batches`` entries
(``input_cost_per_token_batches``, ``cache_read_input_token_cost_batches``, ...). Where an entry lacks a
batch rate, the provider's published rule applies: half the regular rate of that kind of token.
"""

from __future__ import annotations

from lmi.cost.pricing import ModelPrices, TokenRates, model_prices, price_entry
from lmi.types import TokenUsage

BATCH_DISCOUNT = 0.5  # OpenAI and Anthropic both bill batch work at 50 % of the regular rates


def batch_prices(model: str) -> ModelPrices | None:
    """``model``'s rates for batch work, or None when the price map does not know the model."""
    prices = model_prices(model)
    if prices is None:
        return None
    entry = price_entry(model) or {}  # prices set with set_model_prices: the published half-price rule

    def batch_rate(key: str, regular: float) -> float:
        value = entry.get(f"{key}_batches")
        return float(value) if value is not None else regular * BATCH_DISCOUNT

    def optional(key: str, regular: float | None) -> float | None:
        return None if regular is None else batch_rate(key, regular)

    def discounted(rates: TokenRates) -> TokenRates:
        output = batch_rate("output_cost_per_token", rates.output)
        return TokenRates(
            input=batch_rate("input_cost_per_token", rates.input),
            output=output,
            cache_read=batch_rate("cache_read_input_token_cost", rates.cache_read),
            cache_creation=batch_rate("cache_creation_input_token_cost", rates.cache_creation),
            # Reasoning is output unless priced apart; apart, the batch rule halves it.
            reasoning=output if rates.reasoning == rates.output else rates.reasoning * BATCH_DISCOUNT,
            cache_creation_1h=optional("cache_creation_input_token_cost_above_1hr", rates.cache_creation_1h),
            audio_input=optional("input_cost_per_audio_token", rates.audio_input),
            audio_output=optional("output_cost_per_audio_token", rates.audio_output),
        )

    # Long-context tiers keep their regular ratio to the base rates: the map has no tiered batch keys.
    return ModelPrices(
        key=prices.key,
        base=discounted(prices.base),
        tiers=tuple(
            (threshold, _scaled(rates, prices.base, discounted(prices.base)))
            for threshold, rates in prices.tiers
        ),
        inclusive_thresholds=prices.inclusive_thresholds,
        web_search=prices.web_search,  # searches are billed per search, batch or not
    )


def _scaled(tier: TokenRates, regular: TokenRates, batch: TokenRates) -> TokenRates:
    def scale(tier_rate: float, regular_rate: float, batch_rate: float) -> float:
        return tier_rate * (batch_rate / regular_rate) if regular_rate else tier_rate * BATCH_DISCOUNT

    def scale_optional(
        tier_rate: float | None, regular_rate: float | None, batch_rate: float | None
    ) -> float | None:
        if tier_rate is None or regular_rate is None or batch_rate is None:
            return batch_rate
        return scale(tier_rate, regular_rate, batch_rate)

    return TokenRates(
        cache_creation_1h=scale_optional(
            tier.cache_creation_1h, regular.cache_creation_1h, batch.cache_creation_1h
        ),
        audio_input=scale_optional(tier.audio_input, regular.audio_input, batch.audio_input),
        audio_output=scale_optional(tier.audio_output, regular.audio_output, batch.audio_output),
        input=scale(tier.input, regular.input, batch.input),
        output=scale(tier.output, regular.output, batch.output),
        cache_read=scale(tier.cache_read, regular.cache_read, batch.cache_read),
        cache_creation=scale(tier.cache_creation, regular.cache_creation, batch.cache_creation),
        reasoning=scale(tier.reasoning, regular.reasoning, batch.reasoning),
    )


def batch_usage_cost(model: str, usage: TokenUsage) -> float | None:
    """USD billed for ``usage`` on ``model`` through a batch API; None when the model has no price."""
    prices = batch_prices(model)
    return None if prices is None else prices.cost(usage)


__all__ = ["BATCH_DISCOUNT", "batch_prices", "batch_usage_cost"]
