"""Parsing ``LiteLLMModel.config`` into typed settings, once, at construction.

Two shapes are accepted:

* LiteLLM's router shape: ``{"model_list": [{"model_name": ..., "litellm_params": {...}}],
  "fallbacks": [...], "router_kwargs": {...}, "rate_limit": {...}, "request_limit": {...}}``;
* a flat shape: ``{"name": "gpt-4o", "temperature": 0.1, "max_tokens": 512, "n": 5, ...}``.

Both shapes check their completion parameters the same way (:func:`lmi.llms.params.check_params`):
known ones are type-checked, a near miss of one is refused with a did-you-mean, and a provider's own
parameters (``vertex_project``, ``aws_region_name``) pass. Structural keys (``model_list`` entries,
``router_kwargs``) are lmi's own: any unknown one is refused, so a typo never silently changes a call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lmi._checks import check_keys
from lmi.constants import DEFAULT_VERTEX_SAFETY_SETTINGS
from lmi.exceptions import ConfigurationError

if TYPE_CHECKING:
    from lmi.cost.budget import Budget
from lmi.llms.params import KNOWN_PARAMS, check_params

DEFAULT_MODEL = "gpt-4o-2024-11-20"  # fhlmi's default (CommonLLMNames.GPT_4O)

# Kept for code that imported it from here; the parameters and their checks live in lmi.llms.params.
COMPLETION_PARAMS = KNOWN_PARAMS
RETRY_KEYS = frozenset({"num_retries", "retry_backoff", "max_backoff", "retry_after", "total_timeout"})
# A provider's retry-after is waited in full, whatever max_backoff says, up to this many seconds; a
# longer one moves on to the next model at once (a retry sooner than asked only earns another 429).
RETRY_AFTER_CEILING = 600.0
# Router options that only make sense for LiteLLM's Router (several deployments per name); accepted so
# router configs written for LiteLLM keep working, and ignored because lmi routes calls itself.
IGNORED_ROUTER_KEYS = frozenset(
    {"routing_strategy", "set_verbose", "allowed_fails", "cooldown_time", "cache_responses", "debug_level"}
)
ROUTER_KEYS = RETRY_KEYS | IGNORED_ROUTER_KEYS | {"timeout", "fallbacks"}
# Options of call_batch (lmi.batch): where its state lives, how often it polls, how it splits.
BATCH_KEYS = frozenset({"batch_dir", "batch_poll_interval", "batch_max_requests", "batch_max_bytes"})
TRANSPORT_KEYS = frozenset({"transport", "max_connections"})
TOP_LEVEL_KEYS = (
    frozenset(
        {
            "model_list",
            "fallbacks",
            "router_kwargs",
            "rate_limit",
            "request_limit",
            "max_concurrency",
            "name",
            "prices",
            "budget_usd",
            "cache",
        }
    )
    | BATCH_KEYS
    | TRANSPORT_KEYS
)
TRANSPORTS = ("auto", "native", "litellm")
DEFAULT_MAX_CONNECTIONS = 256
# Keys fhlmi accepts in a flat config that are not completion parameters: kept in ``config``, never sent
# (``tool_parser`` is lifted to the model's field before parsing).
FHLMI_KEYS = frozenset({"model_name", "responses_api", "tool_parser", "llm_type"})


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model the call may go to: its name in the config and the parameters litellm receives."""

    name: str
    params: Mapping[str, Any] = field(repr=False)  # may hold api_key: never in a repr
    transport: str = "auto"  # "auto" | "native" | "litellm", as configured for this deployment
    num_retries: int | None = None  # None: the chain's policy (an LLMConfig sets one per model)
    responses_api: bool = False

    @property
    def model(self) -> str:
        return str(self.params.get("model", self.name))

    def __reduce__(self) -> tuple[Any, ...]:  # a mappingproxy does not pickle; its contents do
        return (
            _deployment,
            (self.name, dict(self.params), self.transport, self.num_retries, self.responses_api),
        )


def _deployment(name: str, params: dict[str, Any], *options: Any) -> Deployment:
    return Deployment(name, MappingProxyType(params), *options)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 3
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_backoff: float = 30.0
    min_wait: float = 0.0  # LiteLLM's ``retry_after``: never retry sooner than this
    total_timeout: float | None = None  # seconds for the whole call, retries and fallbacks included

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        The provider's ``retry-after`` wins over ``max_backoff`` (up to :data:`RETRY_AFTER_CEILING`);
        without one, the backoff doubles from ``backoff`` up to ``max_backoff``.
        """
        if retry_after is not None:
            return min(max(retry_after, self.min_wait), RETRY_AFTER_CEILING)
        return min(max(self.backoff * 2**attempt, self.min_wait), self.max_backoff)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Everything a call needs, resolved once: the order of models to try and how to retry each."""

    primary: str
    deployments: Mapping[str, Deployment]
    fallbacks: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    rate_limit: Mapping[str, Any] = field(default_factory=dict)
    request_limit: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget | None = None  # config["budget_usd"]: caps what this model's calls spend together
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per event loop, for the native transport
    max_concurrency: Mapping[str, int] = field(default_factory=dict)  # calls in flight at once, per model
    response_validator: Any = None  # LLMConfig.response_validator: called with each result
    _chain: tuple[Deployment, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Resolved once: every call reads it.
        names = dict.fromkeys((self.primary, *self.fallbacks))
        object.__setattr__(self, "_chain", tuple(self.deployments[name] for name in names))

    @property
    def chain(self) -> tuple[Deployment, ...]:
        """The primary deployment then each fallback, in order, without repeats."""
        return self._chain

    @property
    def n(self) -> int:
        return int(self.deployments[self.primary].params.get("n") or 1)

    def completions_requested(self, kwargs: Mapping[str, Any]) -> int:
        """The most completions any model of the chain would be asked for: ``n`` from the call, else each
        deployment's own."""
        if "n" in kwargs:
            return requested_n(kwargs["n"])
        return max(requested_n(deployment.params.get("n")) for deployment in self.chain)

    def attempt_timeout(self, deployment: Deployment, kwargs: Mapping[str, Any]) -> float | None:
        """Seconds one attempt on ``deployment`` may take: the call's ``timeout``, else the deployment's,
        else the router's. Anything but a number (an ``httpx.Timeout``) is left to the transport."""
        value = kwargs["timeout"] if "timeout" in kwargs else deployment.params.get("timeout", self.timeout)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return None


def requested_n(n: Any) -> int:
    """A request's ``n`` as the provider will read it; absent or unreadable means one completion."""
    if n is None or isinstance(n, bool):
        return 1
    try:
        return int(n)
    except (TypeError, ValueError):
        return 1


def _as_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a dict, got {type(value).__name__}: {value!r}")
    return value


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"The model name must be a non-empty string, got {name!r}")


def _transport(value: Any, where: str) -> str:
    if value not in TRANSPORTS:
        raise ConfigurationError(f"{where}['transport'] must be one of {TRANSPORTS}, got {value!r}")
    return str(value)


def _max_connections(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"'max_connections' must be a positive integer, got {value!r}")
    return value


def _parse_model_list(model_list: Any, default_transport: str) -> dict[str, Deployment]:
    if not isinstance(model_list, list) or not model_list:
        raise ConfigurationError(f"'model_list' must be a non-empty list of deployments, got {model_list!r}")
    deployments: dict[str, Deployment] = {}
    for index, entry in enumerate(model_list):
        where = f"model_list[{index}]"
        entry = _as_mapping(entry, where)
        check_keys(entry, frozenset({"model_name", "litellm_params", "model_info"}), where)
        name = entry.get("model_name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{where} needs a non-empty string 'model_name', got {name!r}")
        if "litellm_params" not in entry:
            raise ConfigurationError(
                f"{where} ({name!r}) needs 'litellm_params', a dict holding at least the 'model' to call"
            )
        params = dict(_as_mapping(entry["litellm_params"], f"{where}['litellm_params']"))
        transport = _transport(params.pop("transport", default_transport), f"{where}['litellm_params']")
        check_params(params, f"config['model_list'][{index}]['litellm_params']")
        params.setdefault("model", name)
        if not isinstance(params["model"], str) or not params["model"]:
            raise ConfigurationError(f"{where}['litellm_params']['model'] must be a model name string")
        # Several deployments under one name: LiteLLM balances between them; lmi keeps the first and
        # tries the others as fallbacks, so none is lost.
        key = name if name not in deployments else f"{name}#{index}"
        # None means "not set" (fhlmi's normalised max_tokens=None): nothing to send
        sent = {k: v for k, v in params.items() if v is not None}
        deployments[key] = Deployment(name=name, params=MappingProxyType(sent), transport=transport)
    return deployments


def _parse_fallbacks(raw: Any, primary: str) -> tuple[str, ...]:
    """LiteLLM's ``[{"model": ["fallback", ...]}]``, or a plain list of names for the primary model."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigurationError(f"'fallbacks' must be a list, got {raw!r}")
    names: list[str] = []
    for item in raw:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping):
            for source, targets in item.items():
                if isinstance(targets, str):
                    targets = [targets]
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    raise ConfigurationError(f"fallbacks for {source!r} must be a list of model names")
                if source == primary:
                    names.extend(targets)
        else:
            raise ConfigurationError(f"Each fallback must be a model name or a dict, got {item!r}")
    return tuple(names)


def _parse_limits(raw: Any, key: str, primary: str) -> dict[str, Any]:
    """``{"model": "100/minute"}``; a bare limit applies to the primary model."""
    if raw is None:
        return {}
    limits = dict(raw) if isinstance(raw, Mapping) else {primary: raw}
    from lmi.rate_limiter.parsing import parse_rate_limit  # imports `limits` only when limits are set

    for model, value in limits.items():
        try:
            parse_rate_limit(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"config[{key!r}][{model!r}]: {exc}") from None
    return limits


def _parse_concurrency(raw: Any, primary: str) -> dict[str, int]:
    """``{"model": 4}``; a bare number applies to the primary model."""
    if raw is None:
        return {}
    limits = dict(raw) if isinstance(raw, Mapping) else {primary: raw}
    for model, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"config['max_concurrency'][{model!r}]: concurrency must be a whole number >= 1, "
                f"got {value!r}"
            )
    return limits


def _float(value: Any, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key!r} must be a number, got {value!r}") from None
    if math.isnan(number):  # asyncio.sleep(nan) never returns
        raise ConfigurationError(f"{key!r} must be a number, got {value!r}")
    if number < 0:
        raise ConfigurationError(f"{key!r} must not be negative, got {value!r}")
    return number


def _is_sent(key: str) -> bool:
    """Whether a top-level config key is a completion parameter (sent), not lmi's or fhlmi's own."""
    return key not in TOP_LEVEL_KEYS and key not in RETRY_KEYS and key not in FHLMI_KEYS and key != "timeout"


def has_model_identity(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` names the model(s) to call (rather than only limits or retry options)."""
    return "model_list" in config or bool(config.get("name"))


def normalized_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """fhlmi's shape of a config: a flat one becomes a one-entry ``model_list`` beside its own keys.

    The entry's ``litellm_params`` hold what is sent: ``model``, ``n`` (1 unless given), ``max_tokens``
    (``None`` unless given) and every other completion parameter. Router configs are kept as given.
    """
    if "model_list" in config:
        return dict(config)
    params: dict[str, Any] = {"model": name, "n": config.get("n", 1), "max_tokens": config.get("max_tokens")}
    params.update((k, v) for k, v in config.items() if _is_sent(k) and k not in params)
    if "gemini" in name:
        params.setdefault("safety_settings", [dict(s) for s in DEFAULT_VERTEX_SAFETY_SETTINGS])
    return {"model_list": [{"model_name": name, "litellm_params": params}], **config}


def parse_settings(name: str | None, config: Mapping[str, Any]) -> ModelSettings:
    """Resolve ``name`` and ``config`` into :class:`ModelSettings`; raise on anything unusable."""
    config = _as_mapping(config, "config")
    transport = _transport(config.get("transport", "auto"), "config")
    if "model_list" in config:
        # Completion parameters beside a model_list (as in fhlmi's normalised config) apply to every
        # deployment that does not set them itself. Other keys there are refused, unless the first
        # entry holds the same value: the normalised form of a flat config with a provider's own key.
        first = (
            config["model_list"][0] if isinstance(config["model_list"], list) and config["model_list"] else {}
        )
        mirrored = first.get("litellm_params") if isinstance(first, Mapping) else None
        mirrored = mirrored if isinstance(mirrored, Mapping) else {}
        own = {k: v for k, v in config.items() if not (k in mirrored and mirrored[k] == v)}
        check_keys(own, TOP_LEVEL_KEYS | RETRY_KEYS | FHLMI_KEYS | KNOWN_PARAMS, "config")
        check_params(config, "config", also_known=TOP_LEVEL_KEYS | RETRY_KEYS | FHLMI_KEYS)
        shared = {k: v for k, v in config.items() if _is_sent(k) and v is not None}
        deployments = {
            key: replace(d, params=MappingProxyType({**shared, **d.params})) if shared else d
            for key, d in _parse_model_list(config["model_list"], transport).items()
        }
        if name is None:
            name = config.get("name") or next(iter(deployments.values())).name
        _check_name(name)
        if name not in deployments:
            raise ConfigurationError(
                f"Model {name!r} is not in config['model_list'] (names there: {sorted(deployments)})"
            )
        extra_names = tuple(key for key in deployments if key.startswith(f"{name}#"))
    else:
        check_params(config, "config", also_known=TOP_LEVEL_KEYS | RETRY_KEYS | FHLMI_KEYS)
        name = name or config.get("name") or DEFAULT_MODEL
        _check_name(name)
        params = {k: v for k, v in config.items() if _is_sent(k) and v is not None}
        params.setdefault("model", name)
        if "gemini" in name:  # as fhlmi: Gemini blocks only high-risk content unless told otherwise
            params.setdefault("safety_settings", [dict(s) for s in DEFAULT_VERTEX_SAFETY_SETTINGS])
        deployments = {name: Deployment(name, MappingProxyType(params), transport)}
        extra_names = ()

    router = _as_mapping(config.get("router_kwargs", {}), "config['router_kwargs']")
    check_keys(router, ROUTER_KEYS, "config['router_kwargs']")
    options = {**router, **{k: v for k, v in config.items() if k in RETRY_KEYS or k == "timeout"}}

    fallbacks = extra_names + _parse_fallbacks(config.get("fallbacks", router.get("fallbacks")), name)
    for fallback in fallbacks:  # a fallback outside model_list is a plain litellm model name
        deployments.setdefault(
            fallback, Deployment(fallback, MappingProxyType({"model": fallback}), transport)
        )

    num_retries = options.get("num_retries", 3)
    if not isinstance(num_retries, int) or isinstance(num_retries, bool) or num_retries < 0:
        raise ConfigurationError(f"'num_retries' must be a non-negative integer, got {num_retries!r}")
    total = options.get("total_timeout")
    retry = RetryPolicy(
        num_retries=num_retries,
        backoff=_float(options.get("retry_backoff", 0.5), "retry_backoff"),
        max_backoff=_float(options.get("max_backoff", 30.0), "max_backoff"),
        min_wait=_float(options.get("retry_after", 0.0), "retry_after"),
        total_timeout=None if total is None else _float(total, "total_timeout"),
    )
    timeout = options.get("timeout")
    if config.get("prices") is not None:
        _apply_prices(config["prices"], deployments, name)
    return ModelSettings(
        primary=name,
        deployments=deployments,
        fallbacks=fallbacks,
        retry=retry,
        timeout=None if timeout is None else _float(timeout, "timeout"),
        rate_limit=_parse_limits(config.get("rate_limit"), "rate_limit", name),
        request_limit=_parse_limits(config.get("request_limit"), "request_limit", name),
        budget=_budget(config.get("budget_usd")),
        max_connections=_max_connections(config.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
        max_concurrency=_parse_concurrency(config.get("max_concurrency"), name),
    )


def _budget(value: Any) -> Budget | None:
    if value is None:
        return None
    from lmi.cost.budget import Budget

    try:
        return Budget(value)
    except ValueError as exc:
        raise ConfigurationError(f"config['budget_usd']: {exc}") from None


def _apply_prices(prices: Any, deployments: Mapping[str, Deployment], primary: str) -> None:
    """``config["prices"]``: rates for the primary model, or ``{model name: rates}`` for any of them.

    Prices are per model name and process-wide, like the price map they override.
    """
    from lmi.cost.pricing import set_prices_from_config

    per_model = (
        isinstance(prices, Mapping) and prices and all(isinstance(v, Mapping) for v in prices.values())
    )
    names = list(dict.fromkeys((primary, deployments[primary].model)))
    if per_model:  # a deployment name also prices the model string it sends
        by_name = {d.name: d.model for d in deployments.values()}
        prices = {
            model: rates
            for key, rates in prices.items()
            for model in dict.fromkeys((key, by_name.get(key, key)))
        }
    try:
        set_prices_from_config(names, prices)
    except ValueError as exc:
        raise ConfigurationError(f"config['prices']: {exc}") from None
