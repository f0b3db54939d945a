"""Rate limits per ``(namespace, key)``, exact in one process (memory) or across processes (Redis).

The LLM side uses ``("client", model)`` for tokens and ``("client|request", model)`` for requests, both
through :data:`GLOBAL_LIMITER`. Importing this package does no I/O and imports neither ``redis`` nor
``limits``.
"""

from typing import Any

from lmi.exceptions import RedisUnavailableError
from lmi.rate_limiter import defaults
from lmi.rate_limiter.defaults import GLOBAL_RATE_LIMITER_TIMEOUT, MATCH_ALL, MATCH_MACHINE_ID
from lmi.rate_limiter.limiter import GLOBAL_LIMITER, GlobalRateLimiter, RateLimitStatus


def __getattr__(name: str) -> Any:
    """fhlmi's limit constants (``RATE_CONFIG``, ``FALLBACK_RATE_LIMIT``...), built on first access."""
    return getattr(defaults, name)


# the fhlmi constants among these are built on first access, by __getattr__
__all__ = [
    "ANTHROPIC_DEFAULT_RPM",
    "FALLBACK_RATE_LIMIT",
    "GLOBAL_LIMITER",
    "GLOBAL_RATE_LIMITER_TIMEOUT",
    "GOOGLE_DEFAULT_RPM",
    "MATCH_ALL",
    "MATCH_MACHINE_ID",
    "OPENAI_DEFAULT_RPM",
    "RATE_CONFIG",
    "TOKEN_FALLBACK_RATE_LIMIT",
    "GlobalRateLimiter",
    "RateLimitStatus",
    "RedisUnavailableError",
]
