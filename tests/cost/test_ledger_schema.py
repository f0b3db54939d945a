"""A ledger written by an older lmi (no latency, error, trace or span columns) keeps working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lmi.cost import GLOBAL_COST_TRACKER, enable_cost_ledger, read_ledger
from lmi.types import TokenUsage

# The schema lmi 0.1.0 created.
OLD_SCHEMA = """
CREATE TABLE cost_ledger (
    id INTEGER PRIMARY KEY, timestamp TEXT NOT NULL, model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL, tag TEXT, pid INTEGER NOT NULL
);
INSERT INTO cost_ledger VALUES (1, '2025-01-02T03:04:05.000000Z', 'gpt-4o', 10, 5, 0, 0, 0, 0, 0.25, NULL, 7);
"""


def old_ledger(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_SCHEMA)
    return path


def columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[1] for row in connection.execute("PRAGMA table_info(cost_ledger)")]


def test_an_old_ledger_is_read_as_it_is(tmp_path: Path) -> None:
    path = old_ledger(tmp_path / "old.sqlite")
    (row,) = read_ledger(path)
    assert (row.key, row.calls, row.cost_usd) == ("gpt-4o", 1, 0.25)
    assert "trace_id" not in columns(path)  # reading never changes the file


def test_recording_into_an_old_ledger_adds_the_new_columns(tmp_path: Path) -> None:
    path = old_ledger(tmp_path / "old.sqlite")
    enable_cost_ledger(path)
    GLOBAL_COST_TRACKER.record("gpt-4o", TokenUsage(prompt_tokens=1, completion_tokens=2), 0.5, latency_s=0.2)
    GLOBAL_COST_TRACKER.record_failure("gpt-4o", TimeoutError("slow"), 1.0)
    enable_cost_ledger(None)

    assert columns(path)[-6:] == ["latency_s", "error", "trace_id", "span_id", "cache_hit", "saved_usd"]
    with sqlite3.connect(path) as connection:
        query = "SELECT cost_usd, latency_s, error FROM cost_ledger ORDER BY id"
        stored = connection.execute(query).fetchall()
    assert stored == [(0.25, None, None), (0.5, 0.2, None), (0.0, 1.0, "TimeoutError")]
    (row,) = read_ledger(path)  # the failed attempt is no call that cost anything
    assert (row.calls, row.prompt_tokens, row.cost_usd) == (2, 11, 0.75)


def test_two_processes_opening_an_old_ledger_both_succeed(tmp_path: Path) -> None:
    from lmi.cost.ledger import open_ledger

    path = old_ledger(tmp_path / "old.sqlite")
    first, second = open_ledger(path), open_ledger(path)  # the second finds the columns already added
    first.close()
    second.close()
    assert columns(path).count("trace_id") == 1
