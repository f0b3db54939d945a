"""fhlmi's ``lmi.cost_tracker``: the global tracker, its switches, and decorators recording litellm calls.

lmi's chat and embedding calls record themselves (:mod:`lmi.cost`); the decorators here are for code that
calls litellm directly and wants those calls counted too.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lmi.cost.tracker import (
    GLOBAL_COST_TRACKER,
    CostRecord,
    CostTracker,
    cost_tracking_ctx,
    cost_tracking_enabled,
    enable_cost_tracking,
)

R = TypeVar("R")


def set_reporting_threshold(threshold_usd: float) -> None:
    """Log the global lifetime cost each time it grows by ``threshold_usd``."""
    GLOBAL_COST_TRACKER.set_reporting_threshold(threshold_usd)


def track_costs(func: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Record the litellm response ``func`` returns (when tracking is on) before returning it."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> R:
        response = await func(*args, **kwargs)
        if cost_tracking_enabled():
            await GLOBAL_COST_TRACKER.record(response)
        return response

    return wrapper


class TrackedStreamWrapper:
    """Iterates a litellm stream, recording each chunk that carries usage (the last one, usually)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __aiter__(self) -> TrackedStreamWrapper:
        return self

    async def __anext__(self) -> Any:
        chunk = await self.stream.__anext__()
        if cost_tracking_enabled():
            await GLOBAL_COST_TRACKER.record(chunk)
        return chunk


def track_costs_iter(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[TrackedStreamWrapper]]:
    """Wrap the stream ``func`` returns so that its chunks are recorded as they are iterated."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> TrackedStreamWrapper:
        return TrackedStreamWrapper(await func(*args, **kwargs))

    return wrapper


__all__ = [
    "GLOBAL_COST_TRACKER",
    "CostRecord",
    "CostTracker",
    "TrackedStreamWrapper",
    "cost_tracking_ctx",
    "enable_cost_tracking",
    "set_reporting_threshold",
    "track_costs",
    "track_costs_iter",
]
