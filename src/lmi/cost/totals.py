"""Running token and USD totals, and how amounts and tables of them are shown."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from lmi._table import render_table
from lmi.types import TokenUsage

USD_SIGNIFICANT_DIGITS = 3


def format_usd(amount: float) -> str:
    """Dollars as lmi shows them everywhere: cents from $1 up, three significant digits below.

    ``$1,234.50``, ``$0.0123``, ``$0.00000540``, ``$0``: a call costing a millionth of a dollar reads as
    what it cost, never as ``$0.00``, and every amount of a session is written the same way.
    """
    if amount == 0 or not math.isfinite(amount):
        return "$0" if amount == 0 else f"${amount}"
    sign, amount = ("-", -amount) if amount < 0 else ("", amount)
    # The exponent after rounding to the significant digits: 0.0009996 is 0.00100, not 0.000999600.
    exponent = int(f"{amount:.{USD_SIGNIFICANT_DIGITS - 1}e}".partition("e")[2])
    decimals = 2 if exponent >= 0 else USD_SIGNIFICANT_DIGITS - 1 - exponent
    return f"{sign}${amount:,.{decimals}f}"


@dataclass(slots=True)
class ModelCost:
    """Running totals for one model (or one day, one tag, ...)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    estimated_calls: int = 0  # calls whose token counts came from a tokenizer, not the provider
    unpriced_calls: int = 0  # calls the price map could not (fully) price: their cost is a lower bound
    cache_hits: int = 0  # calls answered by the response cache (counted in ``calls``, at no cost)
    cache_saved_usd: float = 0.0  # what those answers had cost when they were first made

    def add_cache_hit(self, saved_usd: float) -> None:
        self.calls += 1
        self.cache_hits += 1
        self.cache_saved_usd += saved_usd

    def add(self, usage: TokenUsage, cost: float, priced: bool = True) -> None:
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_creation_tokens += usage.cache_creation_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        self.cost_usd += cost
        self.estimated_calls += usage.estimated
        self.unpriced_calls += not priced

    def merge(self, other: ModelCost) -> None:
        for f in fields(ModelCost):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def copy(self) -> ModelCost:
        return replace(self)


_COLUMNS = ("calls", "prompt", "cache read", "cache write", "completion", "reasoning", "USD")


def format_cost_table(rows: dict[str, ModelCost], *, label: str = "model", order: str = "cost") -> str:
    """Render per-key totals as an aligned text table with a totals row.

    ``order="cost"`` lists the most expensive first, ``order="key"`` sorts by key (e.g. by day). Keys
    whose token counts were estimated with a tokenizer are starred; keys with calls the price map could
    not price are marked ``!`` and counted under the table.
    """
    if not rows:
        return "No costs recorded."
    by_key = order == "key"
    items = sorted(rows.items(), key=lambda item: item[0] if by_key else (-item[1].cost_usd, item[0]))
    total = ModelCost()
    lines: list[list[str]] = []
    for key, totals in items:
        marks = f"{' *' if totals.estimated_calls else ''}{' !' if totals.unpriced_calls else ''}"
        lines.append([f"{key}{marks}", *_cells(totals)])
        total.merge(totals)
    table = render_table(
        [label, *_COLUMNS],
        lines,
        right=[False] + [True] * len(_COLUMNS),
        footer=["total", *_cells(total)],
    )
    out = [table]
    if total.cache_hits:
        saved = format_usd(total.cache_saved_usd)
        out.append(f"{total.cache_hits:,} call(s) answered by the response cache, saving {saved}")
    if total.estimated_calls:
        out.append(f"* token counts of {total.estimated_calls} call(s) estimated with a tokenizer")
    if total.unpriced_calls:
        unpriced = ", ".join(f"{key} {t.unpriced_calls}" for key, t in items if t.unpriced_calls)
        out.append(
            f"! {total.unpriced_calls} call(s) not fully priced (cost unknown, counted as $0 or at the "
            f"nearest known rate): {unpriced}"
        )
    return "\n".join(out)


def _cells(t: ModelCost) -> list[str]:
    counts = (t.calls, t.prompt_tokens, t.cache_read_tokens, t.cache_creation_tokens)
    return [f"{n:,}" for n in (*counts, t.completion_tokens, t.reasoning_tokens)] + [format_usd(t.cost_usd)]
