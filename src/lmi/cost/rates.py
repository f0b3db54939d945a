"""A model's prices as the provider bills them, built once from one price map entry.

An entry of litellm's map becomes a :class:`ModelPrices`: for each service tier the map prices (standard,
``_priority``, ``_flex``, ``_batches``), base :class:`TokenRates` plus the long-context tiers
(``*_above_200k_tokens``) a prompt moves into. Pricing a call is then a lookup and a few multiplications,
and every kind of billed unit the map has no price for is named, never silently counted as $0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmi.types import TokenUsage

# Service tiers a response may name, and the suffix of their keys in the map.
SERVICE_TIER_SUFFIXES = {"priority": "_priority", "flex": "_flex", "batch": "_batches", "batches": "_batches"}
# Tier names that mean the standard price.
STANDARD_SERVICE_TIERS = frozenset({"", "default", "standard", "auto", "on_demand", "standard_only"})
# Providers that bill the higher tier once the prompt *reaches* the threshold rather than exceeds it.
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
_INPUT, _OUTPUT = "input_cost_per_token", "output_cost_per_token"
_CACHE_READ, _CACHE_WRITE = "cache_read_input_token_cost", "cache_creation_input_token_cost"
_CACHE_WRITE_1H = "cache_creation_input_token_cost_above_1hr"
_REASONING = "output_cost_per_reasoning_token"
_AUDIO_IN, _AUDIO_OUT = "input_cost_per_audio_token", "output_cost_per_audio_token"
RATE_KEYS = (_INPUT, _OUTPUT, _CACHE_READ, _CACHE_WRITE, _CACHE_WRITE_1H, _REASONING, _AUDIO_IN, _AUDIO_OUT)
_SUFFIXES = "|".join(sorted(set(SERVICE_TIER_SUFFIXES.values())))
_TIER_KEY = re.compile(rf"^({'|'.join(RATE_KEYS)})_above_(\d+)(k?)_tokens({_SUFFIXES})?$")
_WEB_SEARCH_SIZES = ("search_context_size_medium", "search_context_size_low", "search_context_size_high")


@dataclass(frozen=True, slots=True)
class TokenRates:
    """USD per token for each kind of billed token; ``None`` where the map has no price for it."""

    input: float
    output: float
    cache_read: float
    cache_creation: float
    reasoning: float
    cache_creation_1h: float | None = None
    audio_input: float | None = None
    audio_output: float | None = None


@dataclass(frozen=True, slots=True)
class CallCost:
    """What one call cost, and whether every unit it was billed for has a price.

    ``unpriced`` names what the price map does not know (the model, ``"audio output"``, a service tier,
    ...); such units are counted at the nearest known rate (or $0 for an unknown model), so ``usd`` is a
    lower bound or an estimate, never a confident figure.
    """

    usd: float
    unpriced: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return not self.unpriced


@dataclass(frozen=True, slots=True)
class _Schedule:
    """One service tier's rates: ``base``, or the highest long-context tier the prompt crosses."""

    base: TokenRates
    tiers: tuple[tuple[int, TokenRates], ...] = ()  # (prompt-token threshold, rates), highest first


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """A model's rates, per service tier and prompt length, plus per-request prices."""

    key: str  # the price map entry (or override) these came from
    base: TokenRates
    tiers: tuple[tuple[int, TokenRates], ...] = ()  # standard tier: (threshold, rates), highest first
    inclusive_thresholds: bool = False
    service_tiers: tuple[tuple[str, _Schedule], ...] = ()  # (key suffix, schedule) for non-standard tiers
    web_search: float | None = None  # USD per server-side web search

    def rates_for(self, prompt_tokens: int, service_tier: str | None = None) -> TokenRates:
        base, tiers = self._schedule(service_tier)
        for threshold, rates in tiers:
            if prompt_tokens > threshold or (self.inclusive_thresholds and prompt_tokens == threshold):
                return rates
        return base

    def _schedule(self, service_tier: str | None) -> tuple[TokenRates, tuple[tuple[int, TokenRates], ...]]:
        suffix = SERVICE_TIER_SUFFIXES.get(service_tier or "")
        if suffix is not None:
            for known, schedule in self.service_tiers:
                if known == suffix:
                    return schedule.base, schedule.tiers
        return self.base, self.tiers

    def knows_tier(self, service_tier: str | None) -> bool:
        if service_tier is None or service_tier.lower() in STANDARD_SERVICE_TIERS:
            return True
        suffix = SERVICE_TIER_SUFFIXES.get(service_tier.lower())
        return suffix is not None and any(known == suffix for known, _ in self.service_tiers)

    def price(self, usage: TokenUsage) -> CallCost:
        """The bill for ``usage``: every kind of token at its own rate, per-request charges added."""
        tier = usage.service_tier.lower() if usage.service_tier else None
        rates = self.rates_for(usage.prompt_tokens, tier)
        unpriced: list[str] = []
        uncached = usage.uncached_prompt_tokens
        audio_in = min(usage.audio_prompt_tokens, uncached)
        writes_1h = min(usage.cache_creation_1h_tokens, usage.cache_creation_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        audio_out = min(usage.audio_completion_tokens, usage.completion_tokens - reasoning)
        text_out = usage.completion_tokens - reasoning - audio_out
        cost = (
            (uncached - audio_in) * rates.input
            + usage.cache_read_tokens * rates.cache_read
            + (usage.cache_creation_tokens - writes_1h) * rates.cache_creation
            + text_out * rates.output
            + reasoning * rates.reasoning
        )
        if audio_in:
            cost += audio_in * _rate_or_flag(rates.audio_input, rates.input, "audio input", unpriced)
        if writes_1h:
            rate = _rate_or_flag(rates.cache_creation_1h, rates.cache_creation, "1h cache writes", unpriced)
            cost += writes_1h * rate
        if audio_out:
            cost += audio_out * _rate_or_flag(rates.audio_output, rates.output, "audio output", unpriced)
        if usage.web_search_requests:
            cost += usage.web_search_requests * _rate_or_flag(self.web_search, 0.0, "web search", unpriced)
        if not self.knows_tier(tier):
            unpriced.append(f"service tier {usage.service_tier!r}")
        return CallCost(cost, tuple(unpriced))

    def cost(self, usage: TokenUsage) -> float:
        return self.price(usage).usd


def _rate_or_flag(rate: float | None, fallback: float, what: str, unpriced: list[str]) -> float:
    if rate is None:
        unpriced.append(what)
        return fallback
    return rate


def has_token_prices(entry: Mapping[str, Any]) -> bool:
    token_prices = (entry.get(_INPUT), entry.get(_OUTPUT))
    return any(price is not None for price in token_prices) or bool(entry.get("tiered_pricing"))


def prices_from_entry(key: str, entry: Mapping[str, Any]) -> ModelPrices:
    """Resolve one map entry into rates for every service tier and long-context tier it prices."""
    standard = _schedule_from_entry(entry, "")
    service_tiers = tuple(
        (suffix, _schedule_from_entry(entry, suffix))
        for suffix in sorted(set(SERVICE_TIER_SUFFIXES.values()))
        if entry.get(_INPUT + suffix) is not None or entry.get(_OUTPUT + suffix) is not None
    )
    return ModelPrices(
        key=key,
        base=standard.base,
        tiers=standard.tiers,
        inclusive_thresholds=entry.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS,
        service_tiers=service_tiers,
        web_search=_web_search_price(entry),
    )


def _schedule_from_entry(entry: Mapping[str, Any], suffix: str) -> _Schedule:
    # A service tier's rate is its own key (``input_cost_per_token_priority``), else the standard one.
    explicit = {name: _rate(entry, name + suffix, fallback=_rate(entry, name)) for name in RATE_KEYS}
    base = _complete(explicit, output_fallback=0.0)
    tiers: list[tuple[int, TokenRates]] = []

    # `*_above_<N>k_tokens[_tier]` keys: each rate at a threshold is its own key, else one threshold down.
    thresholds: dict[int, dict[str, float]] = {}
    for name, value in entry.items():
        match = _TIER_KEY.match(name)
        if match is None or value is None or (match[4] or "") not in ("", suffix):
            continue
        threshold = int(match[2]) * (1000 if match[3] else 1)
        at_threshold = thresholds.setdefault(threshold, {})
        if match[4] or match[1] not in at_threshold:  # the tier's own key wins over the standard one
            at_threshold[match[1]] = _number(value, name)
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
            if not tier_range or tier.get(_INPUT) is None:
                continue
            rates = _complete(
                {name: _rate(tier, name) for name in RATE_KEYS}, output_fallback=model_output_rate
            )
            low = int(float(tier_range[0]))
            if low <= 0:
                base = rates
            else:
                tiers.append((low, rates))

    tiers.sort(key=lambda item: item[0], reverse=True)
    return _Schedule(base=base, tiers=tuple(tiers))


def _web_search_price(entry: Mapping[str, Any]) -> float | None:
    per_query = entry.get("search_context_cost_per_query")
    if isinstance(per_query, Mapping):
        for size in _WEB_SEARCH_SIZES:
            if per_query.get(size) is not None:
                return _number(per_query[size], f"search_context_cost_per_query.{size}")
    return None


def _number(value: Any, name: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"price {name} must be a finite number >= 0, not {value!r}")
    return number


def _rate(entry: Mapping[str, Any], key: str, fallback: float | None = None) -> float | None:
    value = entry.get(key)
    if value is None:
        return fallback
    return _number(value, key)


def _complete(rates: Mapping[str, float | None], *, output_fallback: float) -> TokenRates:
    """Fill absent rates the way providers bill: cache tokens as input, reasoning as output."""
    input_rate = rates[_INPUT] or 0.0
    output_rate = rates[_OUTPUT]
    output_rate = output_fallback if output_rate is None else output_rate
    cache_read = rates[_CACHE_READ]
    cache_creation = rates[_CACHE_WRITE]
    reasoning = rates[_REASONING]
    return TokenRates(
        input=input_rate,
        output=output_rate,
        cache_read=input_rate if cache_read is None else cache_read,
        cache_creation=input_rate if cache_creation is None else cache_creation,
        reasoning=output_rate if reasoning is None else reasoning,
        cache_creation_1h=rates[_CACHE_WRITE_1H],
        audio_input=rates[_AUDIO_IN],
        audio_output=rates[_AUDIO_OUT],
    )


def split_cost(usd: float, parts: int) -> list[float]:
    """``usd`` in ``parts`` shares whose sum is exactly ``usd`` in float arithmetic, in any order.

    Each share is a whole number of units of the last place of ``usd`` (the remainder on the first), so
    every partial sum is such a whole number below 2**53 units: representable, hence computed without
    rounding. ``sum(shares) == usd`` holds bit for bit, whatever order the shares are added in.
    """
    if parts <= 1:
        return [usd]
    if usd == 0 or not math.isfinite(usd):
        return [usd] + [0.0] * (parts - 1)
    unit = math.ulp(usd)
    units = round(usd / unit)  # exact: a power-of-two division of a float
    share, remainder = divmod(units, parts)
    return [(share + remainder) * unit] + [share * unit] * (parts - 1)
