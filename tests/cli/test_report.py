"""``lmi report`` as a user runs it: tables, the HTML page, and every bad input as one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmi.cost.totals import format_usd
from tests.cli.conftest import RunLmi, assert_one_line_error, base_env
from tests.cost.test_ledger_schema import old_ledger
from tests.report.sample import MODELS, sample_calls

ROOT = Path(__file__).parents[2]


@pytest.fixture
def sample_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "costs.sqlite"
    env = {**base_env(), "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    subprocess.run([sys.executable, "-m", "tests.report.sample", str(path)], check=True, env=env, cwd=ROOT)
    return path


def test_tables_show_spend_tokens_latency_and_errors(run_lmi: RunLmi, sample_ledger: Path) -> None:
    calls = sample_calls()
    result = run_lmi("report", "--ledger", sample_ledger)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("Spend per day", "Per model", "Latency per model", "Errors (failed attempts)"):
        assert heading in out
    total = sum(c.cost for c in calls)
    assert f"Total: {format_usd(total)} over {sum(1 for c in calls if not c.error)} calls" in out
    lines = out.splitlines()
    for model in MODELS:
        mine = [c for c in calls if c.model == model and not c.error]
        (row,) = [line for line in lines[lines.index("Per model") :] if line.startswith(model)][:1]
        assert f"{sum(c.usage.prompt_tokens for c in mine):,}" in row
        assert f"{format_usd(sum(c.cost for c in mine))}" in row
    assert any(line.split()[-2:] == ["Timeout", "3"] for line in lines)


def test_env_ledger_and_html_page(run_lmi: RunLmi, sample_ledger: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    result = run_lmi("report", "--since", "7d", "--html", target, env={"LMI_COST_LEDGER": str(sample_ledger)})
    assert result.returncode == 0, result.stderr
    assert f"Wrote {target}" in result.stdout
    markup = target.read_text()
    assert markup.startswith("<!DOCTYPE html>")
    for chart in ("spend-chart", "tokens-chart", "latency-chart", "errors-chart"):
        assert f'id="{chart}"' in markup


def test_an_old_ledger_reports_what_it_has(run_lmi: RunLmi, tmp_path: Path) -> None:
    path = old_ledger(tmp_path / "old.sqlite")
    result = run_lmi("report", "--ledger", path, "--since", "all")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "gpt-4o" in result.stdout
    assert "1 calls were recorded by an older lmi, without latency" in result.stdout
    assert (
        run_lmi("report", "--ledger", path, "--since", "all", "--html", tmp_path / "r.html").returncode == 0
    )


def test_an_empty_ledger_says_so(run_lmi: RunLmi, tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    from lmi.cost.ledger import open_ledger

    open_ledger(path).close()
    result = run_lmi("report", "--ledger", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No calls recorded in ")
    result = run_lmi("report", "--ledger", path, "--html", tmp_path / "empty.html")
    assert result.returncode == 0
    assert "no calls" in result.stdout
    assert 'id="no-calls"' in (tmp_path / "empty.html").read_text()


def test_old_rows_outside_the_period_are_left_out(run_lmi: RunLmi, tmp_path: Path) -> None:
    path = old_ledger(tmp_path / "old.sqlite")  # its one call is from 2025-01-02
    result = run_lmi("report", "--ledger", path, "--since", "2026-01-01")
    assert result.returncode == 0
    assert result.stdout.startswith("No calls recorded in ")


@pytest.mark.parametrize(
    ("args", "fragments", "code"),
    [
        (("--since", "2999-01-01"), ("--since 2999-01-01 is in the future",), 2),
        (("--since", "yesterday"), ("bad --since 'yesterday'",), 2),
        ((), ("no cost ledger: set LMI_COST_LEDGER",), 2),
        (("--ledger", "missing.sqlite"), ("no cost ledger at", "missing.sqlite"), 1),
        (("--ledger", "notes.txt"), ("cannot read the cost ledger", "notes.txt"), 1),
        (("--ledger", "other.sqlite"), ("is not a cost ledger",), 1),
    ],
)
def test_bad_input_is_one_clear_line(
    run_lmi: RunLmi, tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...], code: int
) -> None:
    (tmp_path / "notes.txt").write_text("shopping list: eggs, milk " * 40)
    import sqlite3

    with sqlite3.connect(tmp_path / "other.sqlite") as connection:
        connection.execute("CREATE TABLE t (x)")
    result = run_lmi("report", *args)
    assert_one_line_error(result, *fragments)
    assert result.returncode == code


def test_html_into_a_missing_folder_is_one_clear_line(
    run_lmi: RunLmi, sample_ledger: Path, tmp_path: Path
) -> None:
    result = run_lmi("report", "--ledger", sample_ledger, "--html", tmp_path / "nowhere" / "r.html")
    assert_one_line_error(result, "cannot write", "nowhere")
