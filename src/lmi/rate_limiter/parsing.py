"""Turning user-facing limit values (strings, ``limits`` items, env variables, URLs) into plain settings.

``limits`` takes ~60 ms to import, so it is imported on the first parse of a string, not with this module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lmi.exceptions import ConfigurationError

if TYPE_CHECKING:
    from limits import RateLimitItem

DEFAULT_ACQUIRE_TIMEOUT = 60.0
TIMEOUT_ENV = "RATE_LIMITER_TIMEOUT"
REDIS_URL_ENV = "REDIS_URL"
LIMIT_FORMAT = "'<count> [per|/] [n] <second|minute|hour|day|month|year>[s]', e.g. '100/minute'"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One moving-window limit: at most ``amount`` units in any ``period_seconds``."""

    amount: int
    multiples: int
    granularity: str  # "second", "minute", ... as `limits` names it
    period_seconds: int


@lru_cache(maxsize=4096)
def _parse_string(text: str) -> WindowSpec:
    import limits

    try:
        item = limits.parse(text)
    except ValueError as exc:
        raise ConfigurationError(f"Unparseable rate limit {text!r}: expected {LIMIT_FORMAT}") from exc
    return _spec_from_item(item, text)


def _spec_from_item(item: Any, shown: object) -> WindowSpec:
    try:
        amount, multiples = int(item.amount), int(item.multiples)
        granularity, period = str(item.GRANULARITY.name), int(item.get_expiry())
    except AttributeError as exc:
        raise ConfigurationError(
            f"Unusable rate limit {shown!r}: expected a string like {LIMIT_FORMAT} or a limits.RateLimitItem"
        ) from exc
    if amount <= 0 or period <= 0:
        raise ConfigurationError(f"Rate limit {shown!r} allows nothing: its count and period must be > 0")
    return WindowSpec(amount, multiples, granularity, period)


def parse_rate_limit(value: str | RateLimitItem) -> WindowSpec:
    """Parse once: strings are cached by text, ``RateLimitItem``s read in O(1).

    Raises ``ConfigurationError`` (a ``ValueError``) naming the value when it cannot be used.
    """
    if isinstance(value, str):
        return _parse_string(value)
    return _spec_from_item(value, value)


def window_spec_from(amount: int, multiples: int, granularity: str) -> WindowSpec:
    """Rebuild a spec from the parts stored alongside a window (used by the status of other processes)."""
    return _parse_string(f"{amount} per {multiples} {granularity}")


def whole_weight(weight: float) -> int:
    """Weights are whole units (tokens, requests); fractions round up so nothing goes uncounted."""
    if type(weight) is int and weight > 0:  # the common case, checked first
        return weight
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not weight > 0
        or (isinstance(weight, float) and math.isinf(weight))
    ):
        raise ValueError(f"Rate limit weight must be a number > 0, got {weight!r}")
    return weight if isinstance(weight, int) else math.ceil(weight)


@lru_cache(maxsize=64)
def _parse_timeout(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigurationError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if math.isnan(seconds) or seconds < 0:
        raise ConfigurationError(f"{TIMEOUT_ENV}={raw!r} must be >= 0 seconds")
    return seconds


def acquire_timeout_seconds(explicit: float | None) -> float:
    """The caller's timeout, else env ``RATE_LIMITER_TIMEOUT`` (read per call), else 60 s."""
    if explicit is not None:
        return max(0.0, float(explicit))
    raw = os.environ.get(TIMEOUT_ENV)
    return DEFAULT_ACQUIRE_TIMEOUT if raw is None or not raw.strip() else _parse_timeout(raw.strip())


REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL_FORMAT = "redis://[:password@]host[:port][/db], rediss:// for TLS, or host:port"


def normalize_redis_url(url: str) -> str:
    """``host:port`` means ``redis://host:port``; URLs with a scheme (``rediss://``...) pass as is.

    A URL Redis could never be reached at is refused here, naming it, rather than at the first call.
    """
    url = url.strip()
    url = url if "://" in url else f"redis://{url}"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # "notaurl:::": the port is not a number
        port = None
        problem = "its port is not a number"
    else:
        problem = ""
    if not problem and parts.scheme not in REDIS_SCHEMES:
        problem = f"the scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
    elif not problem and parts.scheme != "unix" and not parts.hostname:
        problem = "it names no host"
    elif not problem and port == 0:
        problem = "port 0 is not a port Redis listens on"
    if problem:
        raise ConfigurationError(f"Bad Redis URL {redacted(url)!r}: {problem}; expected {REDIS_URL_FORMAT}")
    return url


def redis_url_from_env() -> str | None:
    raw = os.environ.get(REDIS_URL_ENV, "").strip()
    return normalize_redis_url(raw) if raw else None


def redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"


class RateConfig(dict[Any, Any]):
    """``{(namespace, key): limit}`` that parses each limit as it is stored, so a bad one fails there.

    A plain ``dict`` otherwise: reads cost nothing extra, and every way of storing a value is checked.
    """

    def __init__(self, items: Mapping[Any, Any] | None = None, /) -> None:
        super().__init__()
        self.update(items or {})

    def __setitem__(self, key: Any, value: Any) -> None:
        _check_entry(key, value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> RateConfig:  # type: ignore[misc]
        self.update(other)
        return self


def _check_entry(key: Any, value: Any) -> None:
    try:
        parse_rate_limit(value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"rate_config[{key!r}]: {exc}") from None
