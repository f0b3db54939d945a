"""The SQLite cost ledger: what each row holds, summaries, several writers, and a killed writer."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from lmi.cost import (
    GLOBAL_COST_TRACKER,
    CostTracker,
    cost_tracking_ctx,
    cost_tracking_enabled,
    enable_cost_ledger,
    enable_cost_tracking,
    format_ledger,
    ledger_path,
    read_ledger,
    usage_cost,
)
from lmi.cost import ledger as ledger_module
from lmi.exceptions import ConfigurationError
from lmi.types import TokenUsage
from tests.cost.ledger_writer import usage_for
from tests.cost.recorded import recorded_calls

WRITER = Path(__file__).with_name("ledger_writer.py")


def rows(path: Path) -> list[sqlite3.Row]:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute("SELECT * FROM cost_ledger ORDER BY id").fetchall()
    finally:
        connection.close()


def test_each_record_becomes_one_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    enable_cost_tracking()
    before = datetime.now(UTC)
    usage = TokenUsage(
        prompt_tokens=120,
        completion_tokens=30,
        cache_read_tokens=100,
        cache_creation_tokens=5,
        reasoning_tokens=9,
    )
    GLOBAL_COST_TRACKER.record("gpt-4o-2024-11-20", usage, 0.00123, tag="experiment-7")
    GLOBAL_COST_TRACKER.record("gpt-4o-2024-11-20", TokenUsage(prompt_tokens=1, estimated=True), 0.5)

    first, second = rows(path)
    assert first["model"] == "gpt-4o-2024-11-20"
    assert (first["prompt_tokens"], first["completion_tokens"]) == (120, 30)
    assert first["cache_read_tokens"] == 100
    assert first["cache_creation_tokens"] == 5
    assert first["reasoning_tokens"] == 9
    assert first["cost_usd"] == 0.00123
    assert first["tag"] == "experiment-7"
    assert first["pid"] == os.getpid()
    assert first["estimated"] == 0
    assert second["estimated"] == 1
    assert second["tag"] is None
    stamp = datetime.strptime(first["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)

    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_disabled_tracking_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    with cost_tracking_ctx(False):
        GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 1.0)
    assert rows(path) == []


def test_only_the_global_tracker_writes_to_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    CostTracker().record("m", TokenUsage(prompt_tokens=1), 1.0)
    assert rows(path) == []


def test_env_var_read_at_first_record_and_implies_tracking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.sqlite"
    monkeypatch.setenv("LMI_COST_LEDGER", str(path))  # set after lmi.cost was imported
    assert not path.exists()
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=3), 0.25)
    assert ledger_path() == path
    assert [r["model"] for r in rows(path)] == ["m"]
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 0.25

    enable_cost_tracking(False)  # an explicit off still wins over the ledger
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=3), 0.25)
    assert len(rows(path)) == 1


def test_no_ledger_no_tracking_by_default() -> None:
    assert ledger_path() is None
    assert not cost_tracking_enabled()


def test_disabling_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 1.0)
    enable_cost_ledger(None)
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 1.0)
    assert len(rows(path)) == 1
    assert GLOBAL_COST_TRACKER.by_model["m"].calls == 2


def test_unusable_path_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(ConfigurationError, match="a-directory"):
        enable_cost_ledger(tmp_path / "a-directory")
    assert ledger_path() is None


def test_a_failing_ledger_logs_once_and_never_breaks_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enable_cost_ledger(tmp_path / "ledger.sqlite")
    enable_cost_tracking()
    connection = ledger_module._LEDGER.connection
    assert connection is not None
    connection.close()  # every later INSERT now fails
    for _ in range(3):
        GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 1.0)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == 3.0
    assert caplog.text.count("Could not append to the cost ledger") == 1


def test_summaries_match_the_tracker(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    enable_cost_tracking()
    calls = recorded_calls()
    for call in calls:
        GLOBAL_COST_TRACKER.record(call.request_model, call.usage, usage_cost(call.request_model, call.usage))

    by_model = read_ledger(path, by="model")
    assert [row.cost_usd for row in by_model] == sorted((row.cost_usd for row in by_model), reverse=True)
    assert {row.key for row in by_model} == set(GLOBAL_COST_TRACKER.by_model)
    for row in by_model:
        totals = GLOBAL_COST_TRACKER.by_model[row.key]
        assert row.calls == totals.calls
        assert row.prompt_tokens == totals.prompt_tokens
        assert row.completion_tokens == totals.completion_tokens
        assert row.cache_read_tokens == totals.cache_read_tokens
        assert row.cache_creation_tokens == totals.cache_creation_tokens
        assert row.reasoning_tokens == totals.reasoning_tokens
        assert row.cost_usd == pytest.approx(totals.cost_usd, abs=1e-12, rel=0)

    (today,) = read_ledger(path, by="day")
    assert today.key == datetime.now(UTC).date().isoformat()
    assert today.calls == len(calls)
    assert today.cost_usd == pytest.approx(GLOBAL_COST_TRACKER.lifetime_cost_usd, abs=1e-12, rel=0)

    table = format_ledger(by_model, by="model")
    assert table == GLOBAL_COST_TRACKER.report()


def test_since_filters_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 1.0, tag="a")
    GLOBAL_COST_TRACKER.record("m", TokenUsage(prompt_tokens=1), 2.0, tag="b")
    now = datetime.now(UTC)
    tomorrow = now.date() + timedelta(days=1)
    assert read_ledger(path, since=tomorrow) == []
    assert read_ledger(path, since=tomorrow.isoformat()) == []
    assert read_ledger(path, since=now + timedelta(minutes=1)) == []
    assert read_ledger(path, since=(now - timedelta(minutes=1)).isoformat())[0].calls == 2
    assert read_ledger(path, since=date(2000, 1, 1))[0].cost_usd == 3.0
    # A naive datetime is UTC.
    assert read_ledger(path, since=(now - timedelta(minutes=1)).replace(tzinfo=None))[0].calls == 2
    by_tag = read_ledger(path, by="tag")
    assert [(row.key, row.cost_usd) for row in by_tag] == [("a", 1.0), ("b", 2.0)]


def test_read_ledger_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_ledger(tmp_path / "missing.sqlite")
    enable_cost_ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(ValueError, match="since"):
        read_ledger(tmp_path / "ledger.sqlite", since="last tuesday")
    with pytest.raises(ValueError, match="by"):
        read_ledger(tmp_path / "ledger.sqlite", by="week")  # type: ignore[arg-type]


def _writer(path: Path, worker: int, count: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "LMI_COST_LEDGER"}
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(worker), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_four_concurrent_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    per_worker = 400
    writers = [_writer(path, worker, per_worker) for worker in range(4)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr

    found = rows(path)
    assert len(found) == 4 * per_worker
    assert sorted(r["tag"] for r in found) == sorted(f"{w}:{i}" for w in range(4) for i in range(per_worker))
    assert len({r["pid"] for r in found}) == 4
    for row in found:
        worker, index = map(int, row["tag"].split(":"))
        model, usage, cost = usage_for(worker, index)
        assert row["model"] == model
        assert row["prompt_tokens"] == usage.prompt_tokens
        assert row["completion_tokens"] == usage.completion_tokens
        assert row["cache_read_tokens"] == usage.cache_read_tokens
        assert row["cache_creation_tokens"] == usage.cache_creation_tokens
        assert row["reasoning_tokens"] == usage.reasoning_tokens
        assert row["cost_usd"] == cost

    expected = [usage_for(w, i) for w in range(4) for i in range(per_worker)]
    for summary in read_ledger(path, by="model"):
        mine = [(usage, cost) for model, usage, cost in expected if model == summary.key]
        assert summary.calls == len(mine) == 2 * per_worker
        assert summary.prompt_tokens == sum(u.prompt_tokens for u, _ in mine)
        assert summary.completion_tokens == sum(u.completion_tokens for u, _ in mine)
        assert summary.cache_read_tokens == sum(u.cache_read_tokens for u, _ in mine)
        assert summary.cache_creation_tokens == sum(u.cache_creation_tokens for u, _ in mine)
        assert summary.reasoning_tokens == sum(u.reasoning_tokens for u, _ in mine)
        assert summary.cost_usd == pytest.approx(math.fsum(c for _, c in mine), abs=1e-12, rel=0)


def test_killed_writer_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    writer = _writer(path, worker=0, count=0)  # writes until killed
    assert writer.stdout is not None
    confirmed = -1
    for line in writer.stdout:
        confirmed = int(line)
        if confirmed >= 300:
            break
    os.kill(writer.pid, signal.SIGKILL)
    rest, _ = writer.communicate(timeout=30)
    confirmed = max([confirmed, *map(int, rest.split())])
    assert writer.returncode == -signal.SIGKILL

    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    indices = [int(r["tag"].split(":")[1]) for r in rows(path)]
    # Every record the writer confirmed is there, in order, with nothing half-written after it.
    assert indices == list(range(len(indices)))
    assert len(indices) >= confirmed + 1
    for row in rows(path):
        _, usage, cost = usage_for(0, int(row["tag"].split(":")[1]))
        assert (row["prompt_tokens"], row["cost_usd"]) == (usage.prompt_tokens, cost)

    # The file stays usable: another process appends after the crash.
    survivor = _writer(path, worker=1, count=5)
    _, stderr = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, stderr
    assert len(rows(path)) == len(indices) + 5


def test_unpriced_calls_kept_per_row_and_summed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    enable_cost_ledger(path)
    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("local-model", TokenUsage(prompt_tokens=5), 0.0, priced=False)
    GLOBAL_COST_TRACKER.record("local-model", TokenUsage(prompt_tokens=5), 0.0, priced=False)
    GLOBAL_COST_TRACKER.record("gpt-4o-mini", TokenUsage(prompt_tokens=5), 1e-6)
    assert [row["unpriced"] for row in rows(path)] == [1, 1, 0]
    summary = {row.key: row.unpriced_calls for row in read_ledger(path)}
    assert summary == {"local-model": 2, "gpt-4o-mini": 0}
    assert "local-model !" in format_ledger(read_ledger(path))


def test_ledger_from_before_the_unpriced_column_is_read_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    connection = sqlite3.connect(path)
    schema = ledger_module._SCHEMA.replace(",\n    unpriced INTEGER NOT NULL DEFAULT 0", "")
    assert "unpriced" not in schema
    connection.executescript(schema)
    connection.execute(
        "INSERT INTO cost_ledger (timestamp, model, prompt_tokens, completion_tokens, cache_read_tokens,"
        " cache_creation_tokens, reasoning_tokens, estimated, cost_usd, tag, pid)"
        " VALUES ('2026-01-01T00:00:00.000000Z', 'gpt-4o', 1, 1, 0, 0, 0, 0, 0.5, NULL, 1)"
    )
    connection.commit()
    connection.close()
    (old,) = read_ledger(path)
    assert (old.calls, old.unpriced_calls, old.cost_usd) == (1, 0, 0.5)
    enable_cost_ledger(path)  # opening it for writing adds the column
    enable_cost_tracking()
    GLOBAL_COST_TRACKER.record("gpt-4o", TokenUsage(prompt_tokens=1), 0.25, priced=False)
    (both,) = read_ledger(path)
    assert (both.calls, both.unpriced_calls, both.cost_usd) == (2, 1, 0.75)
