"""fhlmi's rate-limit constants, importable under their names and never applied unless passed.

lmi applies no default limits (a limit you did not ask for only slows you down); pass these yourself,
e.g. ``GlobalRateLimiter(rate_config=RATE_CONFIG)``. The ``limits`` items are built on first access, so
importing :mod:`lmi.rate_limiter` does not import ``limits``.
"""

from __future__ import annotations

import os
from typing import Any, Final

MATCH_ALL: Final = None  # a key of None matches every key of its namespace
MATCH_MACHINE_ID: Final = "<machine_id>"


def _timeout() -> float:
    raw = os.environ.get("RATE_LIMITER_TIMEOUT", "").strip()
    return float(raw) if raw else 60.0


GLOBAL_RATE_LIMITER_TIMEOUT: Final = _timeout()

_LIMITS: dict[str, tuple[str, int]] = {
    "FALLBACK_RATE_LIMIT": ("RateLimitItemPerSecond", 3),
    "TOKEN_FALLBACK_RATE_LIMIT": ("RateLimitItemPerMinute", 30_000),
    "OPENAI_DEFAULT_RPM": ("RateLimitItemPerMinute", 500),
    "ANTHROPIC_DEFAULT_RPM": ("RateLimitItemPerMinute", 50),
    "GOOGLE_DEFAULT_RPM": ("RateLimitItemPerMinute", 15),
}


def _item(kind: str, amount: int) -> Any:
    import limits

    return getattr(limits, kind)(amount, 1)


def _rate_config() -> dict[tuple[str, str | None], Any]:
    openai, anthropic, google = (
        _item(*_LIMITS[n]) for n in ("OPENAI_DEFAULT_RPM", "ANTHROPIC_DEFAULT_RPM", "GOOGLE_DEFAULT_RPM")
    )
    return {
        ("get", "api.crossref.org"): _item("RateLimitItemPerSecond", 30),
        ("get", "api.semanticscholar.org"): _item("RateLimitItemPerSecond", 15),
        ("client|request", "gpt-3.5-turbo"): _item("RateLimitItemPerMinute", 3500),
        ("client|request", "gpt-4o"): openai,
        ("client|request", "gpt-4"): openai,
        ("client|request", "claude-3"): anthropic,
        ("client|request", "claude-3.5-sonnet"): anthropic,
        ("client|request", "gemini-2.0-flash"): google,
        ("client", MATCH_ALL): _item(*_LIMITS["TOKEN_FALLBACK_RATE_LIMIT"]),
        (f"get|{MATCH_MACHINE_ID}", MATCH_ALL): _item(*_LIMITS["FALLBACK_RATE_LIMIT"]),
    }


def __getattr__(name: str) -> Any:
    if name in _LIMITS:
        value = _item(*_LIMITS[name])
    elif name == "RATE_CONFIG":
        value = _rate_config()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "ANTHROPIC_DEFAULT_RPM",  # noqa: F822 - built on first access by __getattr__
    "FALLBACK_RATE_LIMIT",  # noqa: F822
    "GLOBAL_RATE_LIMITER_TIMEOUT",
    "GOOGLE_DEFAULT_RPM",  # noqa: F822
    "MATCH_ALL",
    "MATCH_MACHINE_ID",
    "OPENAI_DEFAULT_RPM",  # noqa: F822
    "RATE_CONFIG",  # noqa: F822
    "TOKEN_FALLBACK_RATE_LIMIT",  # noqa: F822
]
