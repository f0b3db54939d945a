"""The report as one self-contained HTML page: inline CSS and SVG charts, nothing fetched from anywhere.

Every chart mark is an SVG element with a ``<title>`` (the browser's tooltip) and ``data-*`` attributes
holding its exact value, and the page repeats each chart's numbers in a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from lmi.report import PERCENTILES, Report
from lmi.report.text import period, seconds, usd

# Colour-blind-safe (Okabe-Ito, then Tol) and distinct on white.
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9",
    "#D55E00", "#F0E442", "#332288", "#882255", "#44AA99",
)  # fmt: skip
TOKEN_COLOURS = {"input": "#0072B2", "cached input": "#56B4E9", "output": "#E69F00"}
LATENCY_COLOURS = {50: "#009E73", 90: "#E69F00", 99: "#D55E00"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 280, 72, 56, 12

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d2330}
main{max-width:820px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:4px 0 10px}
.sub{color:#5b6475;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 14px;min-width:130px}
.card strong{display:block;font-size:20px}.card span{color:#5b6475;font-size:12px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 16px;margin-top:16px}
svg{display:block;max-width:100%;height:auto}
svg text{font-size:11px;fill:#3b4354}.grid{stroke:#e4e7ec}.axis{stroke:#8a93a5}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 0;padding:0;list-style:none;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;width:100%;margin-top:10px;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eceef2;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}th{color:#5b6475;font-weight:600}
.note{color:#5b6475;font-size:12px}.empty{color:#5b6475;font-style:italic}
"""


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>lmi report: {escape(period(report))}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Where the time and money went</h1>",
        f'<p class="sub">Calls recorded in {escape(period(report))};'
        f" generated {report.generated:%Y-%m-%d %H:%M} UTC.</p>",
    ]
    if report.empty:
        parts.append('<p class="empty" id="no-calls">No calls recorded in this period.</p>')
    else:
        parts += [_cards(report), _spend(report), _tokens(report), _latency(report), _errors(report)]
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _cards(report: Report) -> str:
    calls = sum(m.calls for m in report.models)
    tokens = sum(m.prompt_tokens + m.completion_tokens for m in report.models)
    errors = sum(report.errors.values())
    cards = [
        ("total-cost", usd(report.total_cost), "spent"),
        ("total-calls", f"{calls:,}", "calls"),
        ("total-tokens", f"{tokens:,}", "tokens"),
        ("total-savings", usd(report.total_savings), "saved by prompt caching"),
        ("total-errors", f"{errors:,}", "failed attempts"),
    ]
    inner = "".join(
        f'<div class="card" id="{key}"><strong>{value}</strong><span>{label}</span></div>'
        for key, value, label in cards
    )
    return f'<div class="cards">{inner}</div>'


def _spend(report: Report) -> str:
    colours = {m.model: PALETTE[i % len(PALETTE)] for i, m in enumerate(report.models)}
    series = [
        (m.model, colours[m.model], [report.spend.get((day, m.model), 0.0) for day in report.days])
        for m in report.models
    ]
    chart = _stacked_bars(
        "spend-chart", "Spend per day per model", report.days, series, usd, "data-usd", _usd_tick
    )
    rows = [
        (day, m.model, usd(report.spend[day, m.model]))
        for day in report.days
        for m in report.models
        if (day, m.model) in report.spend
    ]
    return _section(
        "Spend per day", chart + _legend(colours) + _table(("day (UTC)", "model", "USD"), rows, 2)
    )


def _tokens(report: Report) -> str:
    names = list(TOKEN_COLOURS)
    series = [
        (name, TOKEN_COLOURS[name], [float(report.tokens[day][i]) for day in report.days])
        for i, name in enumerate(names)
    ]
    chart = _stacked_bars(
        "tokens-chart", "Tokens per day", report.days, series, lambda v: f"{v:,.0f}", "data-tokens"
    )
    header = ("model", "input", "cached input", "cache writes", "output", "USD", "cache saved")
    rows = [
        (
            m.model,
            f"{m.prompt_tokens:,}",
            f"{m.cache_read_tokens:,}",
            f"{m.cache_creation_tokens:,}",
            f"{m.completion_tokens:,}",
            usd(m.cost_usd),
            usd(m.cache_savings_usd),
        )
        for m in report.models
    ]
    return _section("Tokens", chart + _legend(TOKEN_COLOURS) + _table(header, rows))


def _latency(report: Report) -> str:
    timed = [m for m in report.models if m.latency_s]
    note = ""
    if report.untimed_calls:
        note = (
            f'<p class="note">{report.untimed_calls:,} calls were recorded by an older lmi, without'
            " latency; the percentiles leave them out.</p>"
        )
    if not timed:
        return _section("Latency per model", '<p class="empty">No latencies recorded.</p>' + note)
    groups = [(m.model, [(f"p{p}", LATENCY_COLOURS[p], m.latency_s[p]) for p in PERCENTILES]) for m in timed]
    chart = _horizontal_bars(
        "latency-chart", "Latency percentiles per model", groups, seconds, "data-seconds"
    )
    header = ("model", "timed calls", *(f"p{p}" for p in PERCENTILES))
    rows = [(m.model, f"{m.timed_calls:,}", *(seconds(m.latency_s[p]) for p in PERCENTILES)) for m in timed]
    legend = _legend({f"p{p}": colour for p, colour in LATENCY_COLOURS.items()})
    return _section(
        "Latency per model (request sent to last token)", chart + legend + _table(header, rows) + note
    )


def _errors(report: Report) -> str:
    if not report.errors:
        return _section("Errors", '<p class="empty" id="no-errors">No failed attempts.</p>')
    groups = [
        (f"{model}: {error}", [("attempts", "#D55E00", float(count))])
        for (model, error), count in report.errors.items()
    ]
    chart = _horizontal_bars(
        "errors-chart", "Failed attempts per model and error", groups, lambda v: f"{v:,.0f}", "data-count"
    )
    rows = [(model, error, f"{count:,}") for (model, error), count in report.errors.items()]
    return _section("Errors (failed attempts)", chart + _table(("model", "error", "attempts"), rows, 2))


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _legend(colours: dict[str, str]) -> str:
    items = "".join(f'<li><i style="background:{c}"></i>{escape(name)}</li>' for name, c in colours.items())
    return f'<ul class="legend">{items}</ul>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """A table whose first ``text_columns`` columns are text and the rest numbers (aligned right)."""

    def cell(tag: str, index: int, value: str) -> str:
        align = "" if index < text_columns else ' class="num"'
        return f"<{tag}{align}>{escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _usd_tick(value: float) -> str:
    return f"${value:,.0f}" if value >= 100 else f"${value:.4g}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** _floor_log10(value)
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value, exponent = value / 10, exponent + 1
    while value < 1:
        value, exponent = value * 10, exponent - 1
    return exponent


def _stacked_bars(
    chart_id: str,
    label: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Callable[[float], str],
    data_key: str,
    tick_fmt: Callable[[float], str] | None = None,
) -> str:
    tick_fmt = tick_fmt or fmt
    totals = [sum(values[i] for _, _, values in series) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - 12, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(categories), 1)
    bar_w = max(min(slot * 0.7, 48), 2)
    out = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
    ]
    for tick in range(5):
        value = top * tick / 4
        y = TOP + plot_h - plot_h * tick / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 12}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(tick_fmt(value))}</text>')
    every = max(1, len(categories) // 12)  # at most ~12 labels on the axis
    for i, category in enumerate(categories):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h
        for name, colour, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            title = f"{category} · {name}: {fmt(value)}"
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}"'
                f' fill="{colour}" data-category="{escape(category)}" data-series="{escape(name)}"'
                f' {data_key}="{value!r}"><title>{escape(title)}</title></rect>'
            )
        if len(categories) <= 16 and totals[i] > 0:  # room for each bar's total above it
            cx = LEFT + slot * i + slot / 2
            out.append(
                f'<text class="total" x="{cx:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                f"{escape(tick_fmt(totals[i]))}</text>"
            )
        if i % every == 0:
            cx, day = LEFT + slot * i + slot / 2, escape(category[5:])  # MM-DD: the year is in the title
            out.append(f'<text x="{cx:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{day}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - 12}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    out.append("</svg>")
    return "".join(out)


def _horizontal_bars(
    chart_id: str,
    label: str,
    groups: Sequence[tuple[str, Sequence[tuple[str, str, float]]]],
    fmt: Callable[[float], str],
    data_key: str,
) -> str:
    bar_h, gap, label_w = 14, 12, 230
    height = TOP + sum(len(bars) * bar_h + gap for _, bars in groups) + 8
    top = _nice_max(max((value for _, bars in groups for _, _, value in bars), default=0.0))
    plot_w = WIDTH - label_w - 90
    out = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
    ]
    y = float(TOP)
    for group, bars in groups:
        shown = group if len(group) <= 34 else group[:33] + "…"
        middle = y + len(bars) * bar_h / 2
        out.append(f'<text x="{label_w - 8}" y="{middle + 4:.1f}" text-anchor="end">{escape(shown)}</text>')
        for name, colour, value in bars:
            w = max(plot_w * value / top, 1.0)
            title = f"{group} · {name}: {fmt(value)}"
            out.append(
                f'<rect class="bar" x="{label_w}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 2}"'
                f' fill="{colour}" data-category="{escape(group)}" data-series="{escape(name)}"'
                f' {data_key}="{value!r}">'
                f"<title>{escape(title)}</title></rect>"
            )
            out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h - 4:.1f}">{escape(fmt(value))}</text>')
            y += bar_h
        y += gap
    out.append(f'<line class="axis" x1="{label_w}" x2="{label_w}" y1="{TOP - 4}" y2="{y - gap + 4:.1f}"/>')
    out.append("</svg>")
    return "".join(out)
