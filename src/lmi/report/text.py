"""The report as plain-text tables, for ``lmi report`` without ``--html``."""

from __future__ import annotations

from lmi._table import render_table
from lmi.cost.totals import format_usd
from lmi.report import PERCENTILES, Report


def usd(value: float | None) -> str:
    """Dollars as lmi writes them everywhere; ``-`` where the amount is unknown."""
    return "-" if value is None else format_usd(value)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def period(report: Report) -> str:
    since = f"since {report.since:%Y-%m-%d %H:%M} UTC" if report.since is not None else "all time"
    return f"{report.ledger} ({since})"


def render_text(report: Report) -> str:
    if report.empty:
        return f"No calls recorded in {period(report)}."
    sections = [
        f"Calls recorded in {period(report)}",
        f"Total: {usd(report.total_cost)} over {sum(m.calls for m in report.models):,} calls;"
        f" prompt caching saved {usd(report.total_savings)}.",
        "",
        "Spend per day",
        _spend_table(report),
        "",
        "Per model",
        _model_table(report),
        "",
        "Latency per model (request sent to last token)",
        _latency_table(report),
    ]
    if report.untimed_calls:
        sections.append(
            f"({report.untimed_calls:,} calls were recorded by an older lmi, without latency:"
            " not counted above)"
        )
    sections += ["", "Errors (failed attempts)", _error_table(report)]
    return "\n".join(sections)


def _spend_table(report: Report) -> str:
    rows = []
    for day in report.days:
        for model in report.models:
            cost = report.spend.get((day, model.model))
            if cost is not None:
                rows.append((day, model.model, usd(cost)))
    return render_table(
        ("day (UTC)", "model", "USD"),
        rows,
        right=(False, False, True),
        footer=("total", "", usd(report.total_cost)),
    )


def _model_table(report: Report) -> str:
    header = ("model", "calls", "errors", "input", "cached input", "output", "USD", "cache saved")
    rows = [
        (
            m.model,
            f"{m.calls:,}",
            f"{m.errors:,}",
            f"{m.prompt_tokens:,}",
            f"{m.cache_read_tokens:,}",
            f"{m.completion_tokens:,}",
            usd(m.cost_usd),
            usd(m.cache_savings_usd),
        )
        for m in report.models
    ]
    return render_table(header, rows, right=(False, *[True] * 7))


def _latency_table(report: Report) -> str:
    header = ("model", "timed calls", *(f"p{p}" for p in PERCENTILES))
    rows = [
        (m.model, f"{m.timed_calls:,}", *(seconds(m.latency_s.get(p)) for p in PERCENTILES))
        for m in report.models
    ]
    return render_table(header, rows, right=(False, *[True] * (1 + len(PERCENTILES))))


def _error_table(report: Report) -> str:
    if not report.errors:
        return "No errors."
    rows = [(model, error, f"{count:,}") for (model, error), count in report.errors.items()]
    return render_table(("model", "error", "attempts"), rows, right=(False, False, True))
