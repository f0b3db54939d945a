"""The response cache's own error."""

from __future__ import annotations

from lmi.exceptions import LMIError


class CacheError(LMIError, RuntimeError):
    """A response cache that cannot be used: a corrupt or foreign file, a failing store. Names the store."""


__all__ = ["CacheError"]
