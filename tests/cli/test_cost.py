"""``lmi cost`` on ledgers written by several processes at once, and its error cases."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lmi.cli._common import CLIError
from lmi.cli.reports import parse_since
from tests.cli.conftest import RunLmi, assert_one_line_error, base_env
from tests.cli.ledger_writer import record_values

WRITER = Path(__file__).with_name("ledger_writer.py")
WORKERS, RECORDS = 4, 40
OLD_DAY = "2024-01-15"


def write_concurrently(path: Path, at: str | None = None, workers: int = WORKERS) -> None:
    extra = [at] if at else []
    processes = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(worker), str(RECORDS), *extra], env=base_env()
        )
        for worker in range(workers)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0


def expected_totals(key_of: dict[int, str], workers: int = WORKERS) -> dict[str, list[float]]:
    """Per key: calls, prompt tokens, completion tokens, USD, recomputed from the writers' values."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for worker in range(workers):
        for index in range(RECORDS):
            _, usage, cost = record_values(worker, index)
            row = totals[key_of[worker]]
            row[0] += 1
            row[1] += usage.prompt_tokens
            row[2] += usage.completion_tokens
            row[3] += cost
    return dict(totals)


def table(stdout: str) -> dict[str, list[float]]:
    """``{key: [calls, prompt, completion, usd]}`` from the printed table (totals row included)."""
    header, *lines = stdout.strip().splitlines()
    columns = re.split(r"\s{2,}", header.strip())
    rows = {}
    for line in lines:
        if set(line) <= {"-"}:
            continue
        cells = dict(zip(columns, re.split(r"\s{2,}", line.strip()), strict=True))
        numbers = [
            float(cells[name].replace(",", "").lstrip("$"))
            for name in ("calls", "prompt", "completion", "USD")
        ]
        rows[cells[columns[0]]] = numbers
    return rows


def with_total(totals: dict[str, list[float]]) -> dict[str, list[float]]:
    """Rows plus the totals row; USD as printed, to three significant digits (the rest exact)."""
    total = [sum(values) for values in zip(*totals.values(), strict=True)]
    return {
        key: [*row[:3], pytest.approx(row[3], rel=5e-3, abs=0)]
        for key, row in {**totals, "total": total}.items()
    }


def test_four_concurrent_writers_sum_exactly_per_model_and_per_tag(run_lmi: RunLmi, tmp_path: Path) -> None:
    ledger = tmp_path / "costs.sqlite"
    write_concurrently(ledger)

    by_model = run_lmi("cost", "--ledger", ledger)
    assert by_model.returncode == 0, by_model.stderr
    expected = expected_totals({worker: f"model-{worker % 2}" for worker in range(WORKERS)})
    assert table(by_model.stdout) == with_total(expected)

    by_tag = run_lmi("cost", "--by", "tag", env={"LMI_COST_LEDGER": str(ledger)})  # the default path
    assert by_tag.returncode == 0, by_tag.stderr
    expected = expected_totals({worker: f"worker-{worker}" for worker in range(WORKERS)})
    assert table(by_tag.stdout) == with_total(expected)


def test_since_and_by_day(run_lmi: RunLmi, tmp_path: Path) -> None:
    ledger = tmp_path / "costs.sqlite"
    write_concurrently(ledger, at=f"{OLD_DAY}T10:00:00+00:00", workers=1)
    write_concurrently(ledger, workers=1)
    today = datetime.now(UTC).date().isoformat()
    one_day = expected_totals({0: "day"}, workers=1)["day"]

    by_day = run_lmi("cost", "--ledger", ledger, "--by", "day")
    assert table(by_day.stdout) == with_total({OLD_DAY: one_day, today: one_day})

    for since in ("2024-06-01", "30d", f"{OLD_DAY}T10:00:01Z"):
        recent = run_lmi("cost", "--ledger", ledger, "--by", "day", "--since", since)
        assert recent.returncode == 0, recent.stderr
        assert table(recent.stdout) == with_total({today: one_day}), since

    everything = run_lmi("cost", "--ledger", ledger, "--by", "day", "--since", OLD_DAY)
    assert table(everything.stdout) == table(by_day.stdout)


def test_without_a_ledger_says_how_to_enable_it(run_lmi: RunLmi) -> None:
    result = run_lmi("cost")
    assert result.returncode == 2
    assert_one_line_error(result, "LMI_COST_LEDGER")


def test_missing_and_broken_ledgers(run_lmi: RunLmi, tmp_path: Path) -> None:
    missing = run_lmi("cost", "--ledger", tmp_path / "nope.sqlite")
    assert missing.returncode == 1
    assert_one_line_error(missing, "nope.sqlite")

    (tmp_path / "not-a-ledger.sqlite").write_text("just text, not SQLite\n" * 100)
    broken = run_lmi("cost", "--ledger", tmp_path / "not-a-ledger.sqlite")
    assert broken.returncode == 1
    assert_one_line_error(broken, "not-a-ledger.sqlite")


def test_parse_since() -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_since("2025-03-01T08:30+02:00") == datetime(2025, 3, 1, 6, 30, tzinfo=UTC)
    assert parse_since("7d", now=now) == datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now=now) == datetime(2025, 3, 10, 10, 30, tzinfo=UTC)
    assert parse_since("2w", now=now) == datetime(2025, 2, 24, 12, 0, tzinfo=UTC)
    for bad in ("yesterday", "2025-13-01", "7 parsecs", ""):
        with pytest.raises(CLIError, match="bad --since"):
            parse_since(bad)


async def test_budget_shows_spent_reserved_and_left(run_lmi: RunLmi, redis_url: str) -> None:
    from lmi.cost import Budget

    budget = Budget(0.5, key="team-a/nightly", redis_url=redis_url)
    spent = await budget.reserve(0.01)
    await budget.settle(spent, 0.125)
    in_flight = await budget.reserve(0.03)

    result = run_lmi("cost", "--budget", "team-a/nightly", "--redis", redis_url)

    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[2].split()
    assert row == ["team-a/nightly", "$0.500", "$0.125", "$0.0300", "$0.345"]
    listed = run_lmi("cost", "--budget", "*", env={"REDIS_URL": redis_url})
    assert "team-a/nightly" in listed.stdout
    await budget.settle(in_flight, 0.0)


def test_budget_bad_key_or_unknown_key(run_lmi: RunLmi, redis_url: str) -> None:
    bad = run_lmi("cost", "--budget", "has space", "--redis", redis_url)
    assert bad.returncode != 0
    assert "budget_key" in bad.stderr
    missing = run_lmi("cost", "--budget", "nobody", "--redis", redis_url)
    assert missing.returncode == 1
    assert "No budget 'nobody'" in missing.stdout
