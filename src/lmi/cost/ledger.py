"""A persistent cost ledger: one SQLite row per tracked call, shared safely by many processes.

The file is in WAL mode and each record is its own transaction, so several processes can append at once
(writers wait on each other through ``busy_timeout``) and a process killed mid-run loses nothing it
committed. A failing ledger logs and is skipped; it never breaks the call being recorded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmi.cost.totals import ModelCost, format_cost_table
from lmi.exceptions import ConfigurationError

if TYPE_CHECKING:
    import sqlite3

    from lmi.cost.tracker import CostRecord

logger = logging.getLogger(__name__)

LEDGER_ENV = "LMI_COST_LEDGER"
BUSY_TIMEOUT_SECONDS = 30.0
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cost_ledger (
    id INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    tag TEXT,
    pid INTEGER NOT NULL,
    unpriced INTEGER NOT NULL DEFAULT 0,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS cost_ledger_timestamp ON cost_ledger (timestamp);
"""
# Columns added after the first schema: an older ledger gets them (default or NULL in old rows) when opened.
_ADDED_COLUMNS = {
    "unpriced": "INTEGER NOT NULL DEFAULT 0",  # 1: the price map could not fully price the call
    "latency_s": "REAL",  # request sent to last token received
    "error": "TEXT",  # the error type of a failed attempt; NULL for a billed call
    "trace_id": "TEXT",  # the OpenTelemetry trace and span of the call, in hex
    "span_id": "TEXT",
    "cache_hit": "INTEGER NOT NULL DEFAULT 0",  # 1: answered by the response cache, at no cost
    "saved_usd": "REAL NOT NULL DEFAULT 0",  # on a cache hit: what the stored answer had cost
}
_INSERT = (
    "INSERT INTO cost_ledger (timestamp, model, prompt_tokens, completion_tokens, cache_read_tokens,"
    " cache_creation_tokens, reasoning_tokens, estimated, cost_usd, tag, pid, unpriced, latency_s, error,"
    " trace_id, span_id, cache_hit, saved_usd)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_GROUPINGS = {"model": "model", "day": "substr(timestamp, 1, 10)", "tag": "coalesce(tag, '(no tag)')"}


class _Ledger:
    """This process's ledger file and its one connection (reopened after a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: Path | None = None
        self.decided = False  # the env var is read once, at the first record, unless set explicitly
        self.connection: sqlite3.Connection | None = None
        self.connection_pid = 0
        self.failing = False  # log the first failure of a run of failures, not every record

    def configure(self, path: Path | None) -> None:
        with self.lock:
            self._close()
            self.path, self.decided, self.failing = path, True, False
            if path is not None:
                try:
                    self._connect()
                except BaseException:
                    self.path = None
                    raise

    def configured(self) -> bool:
        if not self.decided:
            with self.lock:
                if not self.decided:
                    value = os.environ.get(LEDGER_ENV, "").strip()
                    self.path = Path(value).expanduser() if value else None
                    self.decided = True
        return self.path is not None

    def append(self, record: CostRecord) -> None:
        if not self.configured():
            return
        usage = record.usage
        row = (
            record.timestamp.astimezone(UTC).strftime(_TIMESTAMP_FORMAT),
            record.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cache_read_tokens,
            usage.cache_creation_tokens,
            usage.reasoning_tokens,
            int(usage.estimated),
            record.cost_usd,
            record.tag,
            record.pid,
            int(not record.priced),
            record.latency_s,
            record.error,
            record.trace_id,
            record.span_id,
            int(record.cache_hit),
            record.saved_usd,
        )
        with self.lock:
            try:
                self._connect().execute(_INSERT, row)  # autocommit: one transaction per record
            except Exception:
                if not self.failing:
                    logger.exception("Could not append to the cost ledger %s", self.path)
                self.failing = True
            else:
                self.failing = False

    def _connect(self) -> sqlite3.Connection:
        if self.connection is not None and self.connection_pid == os.getpid():
            return self.connection
        # A connection inherited through fork() must not be used (or closed) in the child: drop it.
        self.connection = None
        assert self.path is not None
        self.connection = open_ledger(self.path)
        self.connection_pid = os.getpid()
        return self.connection

    def _close(self) -> None:
        if self.connection is not None and self.connection_pid == os.getpid():
            self.connection.close()
        self.connection = None


_LEDGER = _Ledger()


def enable_cost_ledger(path: str | os.PathLike[str] | None) -> None:
    """Append every tracked call to the SQLite ledger at ``path`` (created if missing); None stops it.

    Without this call, the env ``LMI_COST_LEDGER`` names the ledger, read at the first record. A
    configured ledger also turns cost tracking on unless ``enable_cost_tracking(False)`` said otherwise.
    """
    try:
        _LEDGER.configure(None if path is None else Path(path).expanduser())
    except Exception as exc:
        raise ConfigurationError(f"Cannot open the cost ledger {path}: {exc}") from exc


def ledger_configured() -> bool:
    return _LEDGER.configured()


def ledger_path() -> Path | None:
    """The ledger file records go to, or None."""
    return _LEDGER.path if _LEDGER.configured() else None


def append(record: CostRecord) -> None:
    """Write one record to the configured ledger, if any; never raises."""
    _LEDGER.append(record)


def open_ledger(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a ledger file, in WAL mode, autocommit, usable from any thread."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        # Switching a new file to WAL (and creating the schema) while other processes do the same can
        # answer "database is locked" at once, without SQLite's busy handler: try again for a while.
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                # Committed WAL frames survive a killed process; only an OS crash could lose the last few.
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.executescript(_SCHEMA)
                _add_missing_columns(connection)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    except BaseException:
        connection.close()
        raise
    return connection


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Ledgers written before a column existed get it, with its default (or NULL) for the old rows."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(cost_ledger)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in present:
            try:
                connection.execute(f"ALTER TABLE cost_ledger ADD COLUMN {name} {kind}")
            except Exception as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise


@dataclass(slots=True)
class LedgerSummary(ModelCost):
    """Totals of the ledger rows sharing one ``key`` (a model, a UTC day ``YYYY-MM-DD``, or a tag)."""

    key: str = ""


def read_ledger(
    path: str | os.PathLike[str],
    since: datetime | date | str | None = None,
    by: Literal["model", "day", "tag"] = "model",
) -> list[LedgerSummary]:
    """Sum the ledger at ``path`` per model (most expensive first), per UTC day or per tag (in order).

    ``since`` keeps rows at or after that time: a datetime (naive means UTC), a date (its UTC
    midnight) or an ISO 8601 string. Raises FileNotFoundError for a missing file and ValueError for a
    bad ``since`` or ``by``.
    """
    import sqlite3

    group = _GROUPINGS.get(by)
    if group is None:
        raise ValueError(f"by must be one of {', '.join(_GROUPINGS)}, not {by!r}")
    ledger_file = Path(path).expanduser()
    if not ledger_file.is_file():
        raise FileNotFoundError(f"No cost ledger at {ledger_file}")
    connection = sqlite3.connect(ledger_file, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(cost_ledger)")}
        unpriced_sum = "sum(unpriced)" if "unpriced" in columns else "0"  # a ledger from an older version
        conditions = ["error IS NULL"] if "error" in columns else []  # failed attempts cost nothing
        params: tuple[str, ...] = ()
        if since is not None:
            conditions.append("timestamp >= ?")
            params = (timestamp_bound(since),)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "cost DESC, key" if by == "model" else "key"
        hit_sums = "sum(cache_hit), sum(saved_usd)" if "cache_hit" in columns else "0, 0.0"
        query = (
            f"SELECT {group} AS key, count(*), sum(prompt_tokens), sum(completion_tokens),"
            " sum(cache_read_tokens), sum(cache_creation_tokens), sum(reasoning_tokens), sum(estimated),"
            f" {unpriced_sum}, sum(cost_usd) AS cost, {hit_sums} FROM cost_ledger {where}"
            f" GROUP BY key ORDER BY {order}"
        )
        rows: list[tuple[Any, ...]] = connection.execute(query, params).fetchall()
    finally:
        connection.close()
    return [
        LedgerSummary(
            key=key,
            calls=calls,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
            reasoning_tokens=reasoning,
            estimated_calls=estimated,
            unpriced_calls=unpriced,
            cost_usd=cost,
            cache_hits=hits,
            cache_saved_usd=saved,
        )
        for (
            key,
            calls,
            prompt,
            completion,
            cache_read,
            cache_creation,
            reasoning,
            estimated,
            unpriced,
            cost,
            hits,
            saved,
        ) in rows
    ]


def format_ledger(rows: list[LedgerSummary], by: str = "model") -> str:
    """``read_ledger`` rows as the same table ``CostTracker.report()`` prints."""
    order = "cost" if by == "model" else "key"
    return format_cost_table({row.key: row for row in rows}, label=by, order=order)


def timestamp_bound(since: datetime | date | str) -> str:
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since.strip())
        except ValueError:
            raise ValueError(f"since must be an ISO 8601 date or time, not {since!r}") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
