"""What the cost ledger says about a period: spend per day and model, tokens, cache savings, latency
percentiles and errors. :func:`load_report` reads it; :mod:`lmi.report.text` and :mod:`lmi.report.html`
show it as tables or as one self-contained page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmi.cost.ledger import BUSY_TIMEOUT_SECONDS, timestamp_bound

PERCENTILES = (50, 90, 99)


@dataclass(slots=True)
class ModelReport:
    """One model's calls in the period."""

    model: str
    calls: int = 0  # billed calls; failed attempts are counted in ``errors``
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float = 0.0
    cache_savings_usd: float | None = None  # None: no price known for the model
    latency_s: dict[int, float] = field(default_factory=dict)  # percentile → seconds; empty: none recorded
    timed_calls: int = 0  # calls that carry a latency (rows from an older lmi do not)


@dataclass(slots=True)
class Report:
    ledger: Path
    since: datetime | None
    generated: datetime
    days: list[str]  # UTC days with calls, in order
    models: list[ModelReport]  # most expensive first
    spend: dict[tuple[str, str], float]  # (day, model) → USD
    tokens: dict[str, tuple[int, int, int]]  # day → (uncached input, cached input, output)
    errors: dict[tuple[str, str], int]  # (model, error type) → failed attempts
    untimed_calls: int = 0  # calls recorded by an older lmi, without a latency

    @property
    def empty(self) -> bool:
        return not self.models

    @property
    def total_cost(self) -> float:
        return sum(model.cost_usd for model in self.models)

    @property
    def total_savings(self) -> float:
        return sum(model.cache_savings_usd or 0.0 for model in self.models)


class ReportError(Exception):
    """The ledger cannot be reported on; the message says why, for the person who asked."""


def load_report(path: str | os.PathLike[str], since: datetime | None = None) -> Report:
    """Read the ledger at ``path`` (rows at or after ``since``, if given) into a :class:`Report`.

    Ledgers written by older lmi versions (no latency or error columns) are read as they are. Raises
    :class:`ReportError` for a missing file or one that is not a cost ledger.
    """
    import sqlite3

    ledger = Path(path).expanduser()
    if not ledger.is_file():
        raise ReportError(f"no cost ledger at {ledger}: nothing has been recorded there yet")
    try:
        connection = sqlite3.connect(ledger, timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot open the cost ledger {ledger}: {exc}") from None
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(cost_ledger)")}
        if not columns:
            raise ReportError(f"{ledger} is not a cost ledger (it has no cost_ledger table)")
        return _read(connection, columns, ledger, since)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot read the cost ledger {ledger}: {exc}") from None
    finally:
        connection.close()


def _read(connection: Any, columns: set[str], ledger: Path, since: datetime | None) -> Report:
    has_errors, has_latency = "error" in columns, "latency_s" in columns
    where, params = ("timestamp >= ?", [timestamp_bound(since)]) if since is not None else ("1", [])
    billed = f"{where} AND error IS NULL" if has_errors else where
    day = "substr(timestamp, 1, 10)"
    by_day_model = connection.execute(
        f"SELECT {day}, model, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cache_read_tokens),"
        f" sum(cache_creation_tokens), sum(cost_usd) FROM cost_ledger WHERE {billed}"
        f" GROUP BY {day}, model ORDER BY {day}",
        params,
    ).fetchall()
    errors: dict[tuple[str, str], int] = {}
    if has_errors:
        for model, error, count in connection.execute(
            f"SELECT model, error, count(*) FROM cost_ledger WHERE {where} AND error IS NOT NULL"
            " GROUP BY model, error ORDER BY count(*) DESC, model, error",
            params,
        ):
            errors[model, error] = count
    latencies: dict[str, list[float]] = {}
    if has_latency:
        for model, latency in connection.execute(
            f"SELECT model, latency_s FROM cost_ledger WHERE {billed} AND latency_s IS NOT NULL"
            " ORDER BY model, latency_s",
            params,
        ):
            latencies.setdefault(model, []).append(latency)

    models: dict[str, ModelReport] = {}
    spend: dict[tuple[str, str], float] = {}
    tokens: dict[str, tuple[int, int, int]] = {}
    for day_key, model, calls, prompt, completion, cache_read, cache_creation, cost in by_day_model:
        entry = models.setdefault(model, ModelReport(model))
        entry.calls += calls
        entry.prompt_tokens += prompt
        entry.completion_tokens += completion
        entry.cache_read_tokens += cache_read
        entry.cache_creation_tokens += cache_creation
        entry.cost_usd += cost
        spend[day_key, model] = spend.get((day_key, model), 0.0) + cost
        uncached, cached, output = tokens.get(day_key, (0, 0, 0))
        tokens[day_key] = (uncached + max(prompt - cache_read, 0), cached + cache_read, output + completion)
    for model, _ in errors:
        models.setdefault(model, ModelReport(model))
    for (model, _), count in errors.items():
        models[model].errors += count
    for entry in models.values():
        values = latencies.get(entry.model, [])
        entry.timed_calls = len(values)
        entry.latency_s = {p: percentile(values, p) for p in PERCENTILES} if values else {}
        entry.cache_savings_usd = _cache_savings(entry.model, entry.cache_read_tokens)
    return Report(
        ledger=ledger,
        since=since,
        generated=datetime.now(UTC),
        days=sorted(tokens),
        models=sorted(models.values(), key=lambda m: (-m.cost_usd, m.model)),
        spend=spend,
        tokens=tokens,
        errors=errors,
        untimed_calls=sum(m.calls - m.timed_calls for m in models.values()),
    )


def percentile(ordered: list[float], p: float) -> float:
    """The ``p``-th percentile of sorted values, interpolating linearly between ranks."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _cache_savings(model: str, cache_read_tokens: int) -> float | None:
    """What the cached prompt tokens would have cost at the full input price, less what they cost."""
    if not cache_read_tokens:
        return 0.0
    from lmi.cost import model_prices

    prices = model_prices(model)
    if prices is None:
        return None
    return cache_read_tokens * max(prices.base.input - prices.base.cache_read, 0.0)


__all__ = ["ModelReport", "Report", "ReportError", "load_report", "percentile"]
