"""``load_report`` on a ledger whose every number the test computes itself from the calls it wrote."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import litellm
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmi.report import PERCENTILES, ReportError, load_report, percentile
from tests.report.sample import MODELS, day_of, sample_calls, today, write_ledger


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "costs.sqlite"
    write_ledger(path, sample_calls(), today())
    return path


def test_spend_tokens_latency_and_errors_match_the_calls(ledger_path: Path) -> None:
    start, calls = today(), sample_calls()
    billed = [c for c in calls if c.error is None]

    report = load_report(ledger_path)

    assert report.days == sorted({day_of(c, start) for c in billed})
    expected_spend: dict[tuple[str, str], float] = {}
    for c in billed:
        key = (day_of(c, start), c.model)
        expected_spend[key] = expected_spend.get(key, 0.0) + c.cost
    assert report.spend == expected_spend
    by_model = {m.model: m for m in report.models}
    assert set(by_model) == set(MODELS)
    for model in MODELS:
        mine = [c for c in billed if c.model == model]
        entry = by_model[model]
        assert entry.calls == len(mine)
        assert entry.errors == sum(1 for c in calls if c.model == model and c.error)
        assert entry.prompt_tokens == sum(c.usage.prompt_tokens for c in mine)
        assert entry.completion_tokens == sum(c.usage.completion_tokens for c in mine)
        assert entry.cache_read_tokens == sum(c.usage.cache_read_tokens for c in mine)
        assert entry.cost_usd == sum(c.cost for c in mine)
        latencies = [c.latency for c in mine]
        for p in PERCENTILES:
            assert entry.latency_s[p] == pytest.approx(float(np.percentile(latencies, p)))
    assert [m.cost_usd for m in report.models] == sorted((m.cost_usd for m in report.models), reverse=True)
    assert report.errors == {(MODELS[0], "Timeout"): 3, (MODELS[1], "RateLimitError"): 2}
    for day in report.days:
        on_day = [c for c in billed if day_of(c, start) == day]
        cached = sum(c.usage.cache_read_tokens for c in on_day)
        assert report.tokens[day] == (
            sum(c.usage.prompt_tokens for c in on_day) - cached,
            cached,
            sum(c.usage.completion_tokens for c in on_day),
        )


def test_cache_savings_come_from_the_price_map(ledger_path: Path) -> None:
    report = load_report(ledger_path)
    by_model = {m.model: m for m in report.models}
    price = litellm.model_cost["claude-sonnet-4-5-20250929"]
    claude = by_model["claude-sonnet-4-5-20250929"]
    assert claude.cache_savings_usd == pytest.approx(
        claude.cache_read_tokens * (price["input_cost_per_token"] - price["cache_read_input_token_cost"])
    )
    assert claude.cache_savings_usd > 0
    assert by_model["gpt-4o-mini"].cache_savings_usd == 0  # nothing was read from a cache


def test_since_keeps_the_later_days(ledger_path: Path) -> None:
    start = today()
    report = load_report(ledger_path, since=start - timedelta(days=1))
    assert report.days == [day_of_offset(start, 1), day_of_offset(start, 0)]
    assert sum(report.errors.values()) == sum(1 for c in sample_calls() if c.error and c.day <= 1)


def day_of_offset(start: datetime, days: int) -> str:
    return (start - timedelta(days=days)).date().isoformat()


def test_an_empty_ledger_is_an_empty_report(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    write_ledger(path, [], today())
    report = load_report(path)
    assert report.empty
    assert report.days == []
    assert report.total_cost == 0


def test_an_old_ledger_has_no_latency_but_reports_the_rest(tmp_path: Path) -> None:
    from tests.cost.test_ledger_schema import old_ledger

    report = load_report(old_ledger(tmp_path / "old.sqlite"))
    (model,) = report.models
    assert (model.model, model.calls, model.cost_usd, model.latency_s) == ("gpt-4o", 1, 0.25, {})
    assert report.untimed_calls == 1
    assert report.errors == {}


def test_missing_and_foreign_files_are_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no cost ledger at"):
        load_report(tmp_path / "missing.sqlite")
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database at all, just some text " * 50)
    with pytest.raises(ReportError, match="cannot read the cost ledger"):
        load_report(garbage)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(ReportError, match="not a cost ledger"):
        load_report(other)


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_match_numpys_linear_method(values: list[float]) -> None:
    ordered = sorted(values)
    for p in (*PERCENTILES, 0, 100):
        assert percentile(ordered, p) == pytest.approx(float(np.percentile(values, p)), rel=1e-9, abs=1e-9)
