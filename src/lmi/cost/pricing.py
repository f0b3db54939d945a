"""USD cost of one call's billed usage, from litellm's price map or prices the user set.

A model's prices are resolved once per model name into a :class:`~lmi.cost.rates.ModelPrices`, so pricing
a call is a dict lookup and a few multiplications. The map is read without importing litellm
(:mod:`lmi._model_map`); prices set with :func:`set_model_prices` (or a model's ``config["prices"]``) win
over it, for models the map lacks (local, fine-tuned) or prices it has wrong.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from lmi._model_map import model_map
from lmi.cost.rates import CallCost, ModelPrices, TokenRates, has_token_prices, prices_from_entry
from lmi.types import TokenUsage

logger = logging.getLogger(__name__)

# Tried, in order, before every other provider the map knows when a bare name is not in the map:
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
_NOT_A_MODEL = frozenset({"sample_spec"})
# set_model_prices' keyword -> the price map key it stands for
_OVERRIDE_KEYS = {
    "input_per_token": "input_cost_per_token",
    "output_per_token": "output_cost_per_token",
    "cache_read_per_token": "cache_read_input_token_cost",
    "cache_write_per_token": "cache_creation_input_token_cost",
    "cache_write_1h_per_token": "cache_creation_input_token_cost_above_1hr",
    "reasoning_per_token": "output_cost_per_reasoning_token",
    "audio_input_per_token": "input_cost_per_audio_token",
    "audio_output_per_token": "output_cost_per_audio_token",
}
_OVERRIDE_PREFIX = "override:"  # the ModelPrices.key of prices set with set_model_prices
UNKNOWN_MODEL = "model"  # what CallCost.unpriced names when the whole model has no price


class UnknownModelPriceWarning(UserWarning):
    """A model is missing from the price map, so its calls are counted at $0 and marked unpriced."""


_resolved: dict[str, ModelPrices | None] = {}
_overrides: dict[str, ModelPrices] = {}
_warned: set[str] = set()  # models already warned about: one warning per model, not per call
_resolve_lock = threading.Lock()


def price_usage(model: str, usage: TokenUsage) -> CallCost:
    """What the provider bills for ``usage`` on ``model``, and what of it the prices do not cover.

    Cached prompt reads and cache writes (5-minute and 1-hour) are priced at their own rates, reasoning
    and audio tokens at theirs, the service tier the response names (priority, flex, batch) at its rates,
    a prompt longer than a tier threshold (``*_above_200k_tokens``) moves every token to that tier, and
    server-side web searches are charged per search. A model the map does not know costs $0 with
    ``priced`` False (and one warning per model).
    """
    try:
        prices = _resolved.get(model) or model_prices(model)
        if prices is not None:
            return prices.price(usage)
    except Exception:  # pricing must never break the call it prices
        logger.exception("Could not price a call to %r", model)
        return CallCost(0.0, (UNKNOWN_MODEL,))
    _warn_unpriced(model)
    return CallCost(0.0, (UNKNOWN_MODEL,))


def usage_cost(model: str, usage: TokenUsage) -> float:
    """USD the provider bills for ``usage`` on ``model`` (see :func:`price_usage`); 0.0 when unknown."""
    return price_usage(model, usage).usd


def model_prices(model: str) -> ModelPrices | None:
    """The resolved rates for ``model`` (cached per name), or None when nothing prices it."""
    try:
        return _resolved[model]
    except KeyError:
        pass
    with _resolve_lock:
        if model not in _resolved:
            _resolved[model] = _resolve(model)
    return _resolved[model]


def has_price_override(model: str) -> bool:
    """Whether ``model`` is priced by :func:`set_model_prices` (also as ``openai/<model>`` and the like)."""
    prices = model_prices(model)
    return prices is not None and prices.key.startswith(_OVERRIDE_PREFIX)


def price_entry(model: str) -> dict[str, Any] | None:
    """The raw price map entry for ``model`` (after name resolution), or None."""
    prices = model_prices(model)
    if prices is None or prices.key not in model_map():
        return None
    entry: dict[str, Any] = model_map()[prices.key]
    return entry


def max_output_tokens(model: str) -> int | None:
    """The most tokens ``model`` can write in one answer, per the map (None when it does not say)."""
    prices = model_prices(model)
    entry = model_map().get(prices.key) if prices is not None else None
    for key in ("max_output_tokens", "max_tokens"):
        value = entry.get(key) if isinstance(entry, Mapping) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def set_model_prices(
    model: str,
    input_per_token: float,
    output_per_token: float,
    *,
    cache_read_per_token: float | None = None,
    cache_write_per_token: float | None = None,
    cache_write_1h_per_token: float | None = None,
    reasoning_per_token: float | None = None,
    audio_input_per_token: float | None = None,
    audio_output_per_token: float | None = None,
    web_search_per_request: float | None = None,
) -> None:
    """Price ``model`` (USD per token) in this process, overriding the price map.

    For models the map lacks (local, fine-tuned) or prices wrongly. Rates left out follow the provider
    convention: cache reads and writes at the input rate, reasoning at the output rate. Raises
    ``ValueError`` naming any rate that is negative, NaN or infinite.
    """
    if not isinstance(model, str) or not model:
        raise ValueError(f"set_model_prices needs a model name, not {model!r}")
    given = {
        "input_per_token": input_per_token,
        "output_per_token": output_per_token,
        "cache_read_per_token": cache_read_per_token,
        "cache_write_per_token": cache_write_per_token,
        "cache_write_1h_per_token": cache_write_1h_per_token,
        "reasoning_per_token": reasoning_per_token,
        "audio_input_per_token": audio_input_per_token,
        "audio_output_per_token": audio_output_per_token,
    }
    entry: dict[str, Any] = {}
    for name, value in given.items():
        if value is not None or name in ("input_per_token", "output_per_token"):
            entry[_OVERRIDE_KEYS[name]] = _price(name, value, model)
    if web_search_per_request is not None:
        price = _price("web_search_per_request", web_search_per_request, model)
        entry["search_context_cost_per_query"] = {"search_context_size_medium": price}
    prices = prices_from_entry(f"{_OVERRIDE_PREFIX}{model}", entry)
    with _resolve_lock:
        _overrides[model] = prices
        _resolved.clear()  # names that resolved through this one (e.g. "openai/<model>") re-resolve


def set_prices_from_config(models: list[str], prices: Any) -> None:
    """Apply a model config's ``prices``: one set of rates for all ``models``, or ``{model: rates}``."""
    if not isinstance(prices, Mapping):
        raise ValueError(f"config['prices'] must be a mapping of rates, not {prices!r}")
    if prices and all(isinstance(value, Mapping) for value in prices.values()):
        per_model = dict(prices)
    else:
        per_model = dict.fromkeys(models, prices)
    for model, rates in per_model.items():
        unknown = set(rates) - {*_OVERRIDE_KEYS, "web_search_per_request"}
        if unknown:
            raise ValueError(
                f"config['prices'] for {model!r}: unknown rate(s) {sorted(unknown)}; "
                f"use {sorted({*_OVERRIDE_KEYS, 'web_search_per_request'})}"
            )
        missing = {"input_per_token", "output_per_token"} - set(rates)
        if missing:
            raise ValueError(f"config['prices'] for {model!r} needs {sorted(missing)}")
        set_model_prices(model, **rates)


def clear_model_prices(model: str | None = None) -> None:
    """Forget prices set for ``model`` (every model when None); the price map applies again."""
    with _resolve_lock:
        if model is None:
            _overrides.clear()
        else:
            _overrides.pop(model, None)
        _resolved.clear()


def clear_price_cache() -> None:
    """Forget resolved prices, e.g. after ``litellm.register_model`` changed the map."""
    with _resolve_lock:
        _resolved.clear()
        _warned.clear()


def _price(name: str, value: Any, model: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} for {model!r} must be a number of USD per unit, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} for {model!r} must be finite and >= 0, not {value!r}")
    return float(value)


def _resolve(model: str) -> ModelPrices | None:
    try:
        cost_map = model_map()
        for key in _candidate_keys(model, cost_map):
            override = _overrides.get(key)
            if override is not None:
                return override
            entry = cost_map.get(key)
            if isinstance(entry, Mapping) and has_token_prices(entry):
                return prices_from_entry(key, entry)
    except Exception:  # a malformed map must not break a call
        logger.exception("Could not read the prices for %r", model)
    return None


def _warn_unpriced(model: str) -> None:
    if model in _warned:
        return
    with _resolve_lock:
        if model in _warned:
            return
        _warned.add(model)
    warnings.warn(
        f"No price for model {model!r} in litellm's price map; its calls are counted as $0 and marked "
        "unpriced (set one with lmi.set_model_prices or config['prices']).",
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
    for prefix in (*_PREFERRED_PROVIDERS, *_providers(cost_map)):
        candidate = f"{prefix}/{model}"
        if candidate in cost_map:
            keys.append(candidate)
            break
    return keys


_known_providers: tuple[int, tuple[str, ...]] = (0, ())


def _providers(cost_map: Mapping[str, Any]) -> tuple[str, ...]:
    """Every provider the map names, in first-seen order (recomputed only when the map grows)."""
    global _known_providers
    size, providers = _known_providers
    if size != len(cost_map):
        names = (entry.get("litellm_provider") for entry in cost_map.values() if isinstance(entry, Mapping))
        providers = tuple(dict.fromkeys(name for name in names if isinstance(name, str)))
        _known_providers = (len(cost_map), providers)
    return providers


__all__ = [
    "CallCost",
    "ModelPrices",
    "TokenRates",
    "UnknownModelPriceWarning",
    "clear_model_prices",
    "clear_price_cache",
    "max_output_tokens",
    "model_prices",
    "price_entry",
    "price_usage",
    "set_model_prices",
    "usage_cost",
]
