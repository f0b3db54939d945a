"""A ledger of calls over the last days, written the way lmi writes it, and the numbers a report must show.

``python -m tests.report.sample PATH`` writes it from a separate process (for the CLI tests).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lmi.cost import CostRecord, enable_cost_ledger, ledger
from lmi.types import TokenUsage

MODELS = ("gpt-4o-mini", "claude-sonnet-4-5-20250929", "<b>local & model</b>")


@dataclass(frozen=True)
class Call:
    day: int  # days back from today (UTC)
    model: str
    usage: TokenUsage
    cost: float
    latency: float | None
    error: str | None = None


def sample_calls() -> list[Call]:
    """Deterministic calls: costs are multiples of 2**-12, so any summing order is exact."""
    calls = []
    for day in range(3):
        for index, model in enumerate(MODELS):
            for call in range(2 + day + index):
                usage = TokenUsage(
                    prompt_tokens=1000 * (index + 1) + call,
                    completion_tokens=50 + 10 * call,
                    cache_read_tokens=600 if model.startswith("claude") else 0,
                )
                latency = 0.1 * (index + 1) + 0.05 * call + 0.01 * day
                calls.append(Call(day, model, usage, (1 + call + day + 3 * index) * 2**-12, latency))
        calls.append(Call(day, MODELS[0], TokenUsage(), 0.0, 30.0, error="Timeout"))
    calls.append(Call(0, MODELS[1], TokenUsage(), 0.0, 0.5, error="RateLimitError"))
    calls.append(Call(1, MODELS[1], TokenUsage(), 0.0, 0.4, error="RateLimitError"))
    return calls


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_of(call: Call, start: datetime) -> str:
    return (start - timedelta(days=call.day)).date().isoformat()


def write_ledger(path: Path, calls: list[Call], start: datetime) -> None:
    """Each call at ``start`` (a UTC midnight) less its ``day``, a second apart within the day."""
    enable_cost_ledger(path)
    try:
        for number, call in enumerate(calls):
            at = start - timedelta(days=call.day) + timedelta(seconds=number + 1)
            record = CostRecord(
                model=call.model,
                usage=call.usage,
                cost_usd=call.cost,
                timestamp=at,
                latency_s=call.latency,
                error=call.error,
            )
            ledger.append(record)
    finally:
        enable_cost_ledger(None)


if __name__ == "__main__":
    write_ledger(Path(sys.argv[1]), sample_calls(), today())
