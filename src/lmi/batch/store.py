"""The resumable state of batch jobs, in SQLite.

A job is one ``call_batch``: its items (the request bodies as sent), which provider batch each went into,
and each item's outcome once collected. Everything needed to finish a job is here, so a restarted
process that runs the same ``call_batch`` (same requests, hence the same job id) collects the batches
already submitted instead of paying for them twice. Outcomes are stored as they arrive, so a crash while
collecting loses nothing either.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi.exceptions import ConfigurationError

BATCH_DIR_ENV = "LMI_BATCH_DIR"
FILE_NAME = "batches.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, base_url TEXT NOT NULL,
    n_items INTEGER NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, state TEXT NOT NULL, n_items INTEGER NOT NULL,
    submitted_at REAL NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL, idx INTEGER NOT NULL, custom_id TEXT NOT NULL, body TEXT NOT NULL,
    batch_id TEXT, kind TEXT, answer TEXT, error TEXT, tracked INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS items_by_batch ON items (batch_id);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_custom_id ON items (job_id, custom_id);
"""


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    provider: str
    model: str
    base_url: str
    n_items: int
    created_at: float
    state: str


@dataclass(frozen=True, slots=True)
class Item:
    idx: int
    custom_id: str
    body: dict[str, Any]
    batch_id: str | None
    kind: str | None  # None until collected: succeeded, errored, expired, cancelled
    answer: dict[str, Any] | None
    error: str | None
    tracked: bool
    attempts: int  # batches this item was submitted in (more than one after an expiry)


def default_dir() -> Path:
    """``LMI_BATCH_DIR``, else next to the cost ledger, else the user cache dir."""
    if os.environ.get(BATCH_DIR_ENV):
        return Path(os.environ[BATCH_DIR_ENV]).expanduser()
    from lmi.cost import ledger_path

    ledger = ledger_path()
    if ledger is not None:
        return ledger.parent
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lmi"


class BatchStore:
    """The SQLite file holding every batch job's state (one per directory)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.path = (Path(directory).expanduser() if directory else default_dir()) / FILE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect():
                pass
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"Cannot use {self.path} for batch state: {exc}") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(_SCHEMA)
            yield connection
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise ConfigurationError(f"{self.path} is not an lmi batch state file: {exc}") from exc
            raise
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- jobs ---------------------------------------------------------------------------------------------

    def create_job(self, job: Job, bodies: list[tuple[str, dict[str, Any]]]) -> bool:
        """Record a new job and its items; False (and nothing written) when the job already exists."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone():
                return False
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.job_id, job.provider, job.model, job.base_url, job.n_items, job.created_at, job.state),
            )
            db.executemany(
                "INSERT INTO items (job_id, idx, custom_id, body) VALUES (?, ?, ?, ?)",
                [(job.job_id, i, cid, json.dumps(body)) for i, (cid, body) in enumerate(bodies)],
            )
        return True

    def job(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Job(*row) if row else None

    def jobs(self) -> list[Job]:
        with self._connect() as db:
            return [Job(*row) for row in db.execute("SELECT * FROM jobs ORDER BY created_at")]

    def find_job(self, job_or_batch_id: str) -> Job | None:
        """A job by its id (or a unique prefix of it), or by one of its provider batch ids."""
        with self._connect() as db:
            row = db.execute("SELECT job_id FROM batches WHERE batch_id = ?", (job_or_batch_id,)).fetchone()
            if row:
                job_or_batch_id = row[0]
            rows = db.execute("SELECT * FROM jobs WHERE job_id LIKE ? || '%'", (job_or_batch_id,)).fetchall()
        return Job(*rows[0]) if len(rows) == 1 else None

    def set_job_state(self, job_id: str, state: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET state = ? WHERE job_id = ?", (state, job_id))

    # -- items and batches --------------------------------------------------------------------------------

    def items(self, job_id: str) -> list[Item]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT idx, custom_id, body, batch_id, kind, answer, error, tracked, attempts FROM items "
                "WHERE job_id = ? ORDER BY idx",
                (job_id,),
            ).fetchall()
        return [
            Item(idx, cid, json.loads(body), batch, kind, json.loads(answer) if answer else None, error,
                 bool(tracked), attempts)
            for idx, cid, body, batch, kind, answer, error, tracked, attempts in rows
        ]  # fmt: skip

    def count_answered(self, job_id: str) -> int:
        """Items with an outcome other than ``expired`` (which is resubmitted): a COUNT, no bodies read."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM items WHERE job_id = ? AND kind IS NOT NULL AND kind != 'expired'",
                (job_id,),
            ).fetchone()
        return int(row[0])

    def custom_ids(self, job_id: str, batch_id: str) -> set[str]:
        """The items that went into ``batch_id``."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT custom_id FROM items WHERE job_id = ? AND batch_id = ?", (job_id, batch_id)
            ).fetchall()
        return {row[0] for row in rows}

    def record_batch(self, job_id: str, batch_id: str, custom_ids: list[str]) -> None:
        """Note that ``custom_ids`` went into ``batch_id`` (written once the provider accepted it)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (batch_id, job_id, state, n_items, submitted_at) VALUES (?, ?, ?, ?, ?)",
                (batch_id, job_id, "submitted", len(custom_ids), time.time()),
            )
            db.executemany(
                "UPDATE items SET batch_id = ?, kind = NULL, error = NULL, attempts = attempts + 1 "
                "WHERE job_id = ? AND custom_id = ?",
                [(batch_id, job_id, cid) for cid in custom_ids],
            )

    def batches(self, job_id: str) -> list[tuple[str, str, int, int]]:
        """``(batch_id, state, n_items, done)`` of a job's batches, oldest first."""
        with self._connect() as db:
            return db.execute(
                "SELECT batch_id, state, n_items, done FROM batches WHERE job_id = ? ORDER BY submitted_at",
                (job_id,),
            ).fetchall()

    def update_batch(self, batch_id: str, state: str, done: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE batches SET state = ?, done = ? WHERE batch_id = ?", (state, done, batch_id))

    def record_outcomes(
        self, job_id: str, batch_id: str, outcomes: list[tuple[str, str, Any, str | None]]
    ) -> None:
        """Store ``(custom_id, kind, answer, error)`` for items of ``batch_id`` and mark the batch collected,
        in one transaction: a crash leaves the batch either collected in full or still to collect."""
        with self._transaction() as db:
            db.execute("UPDATE batches SET state = 'collected' WHERE batch_id = ?", (batch_id,))
            db.executemany(
                "UPDATE items SET kind = ?, answer = ?, error = ? "
                "WHERE job_id = ? AND custom_id = ? AND batch_id = ?",
                [
                    (kind, json.dumps(answer) if answer is not None else None, error, job_id, cid, batch_id)
                    for cid, kind, answer, error in outcomes
                ],
            )

    def refuse(self, job_id: str, reasons: dict[int, str]) -> None:
        """Keep items out of every batch (``batch_id`` "-"), each errored with its reason."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE items SET batch_id = '-', kind = 'errored', error = ? WHERE job_id = ? AND idx = ?",
                [(reason, job_id, idx) for idx, reason in reasons.items()],
            )

    def answer_from_cache(self, job_id: str, indices: list[int]) -> None:
        """Keep items the response cache answers out of every batch (``batch_id`` "cache")."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE items SET batch_id = 'cache', kind = 'cached' WHERE job_id = ? AND idx = ? "
                "AND (batch_id IS NULL OR batch_id = 'cache')",
                [(job_id, idx) for idx in indices],
            )

    def mark_tracked(self, job_id: str, indices: list[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE items SET tracked = 1 WHERE job_id = ? AND idx = ?", [(job_id, i) for i in indices]
            )
