"""Rate limits per ``(namespace, key)``, exact in one process (memory) or across processes (Redis).

The LLM side uses ``("client", model)`` for tokens and ``("client|request", model)`` for requests, both
through :data:`GLOBAL_LIMITER`. Importing this package does no I/O and imports neither ``redis`` nor
``limits``.
"""

from lmi.exceptions import RedisUnavailableError
from lmi.rate_limiter.limiter import GLOBAL_LIMITER, GlobalRateLimiter, RateLimitStatus

__all__ = ["GLOBAL_LIMITER", "GlobalRateLimiter", "RateLimitStatus", "RedisUnavailableError"]
