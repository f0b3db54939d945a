"""The SQLite store: one file, shared safely by every process on the machine.

The file is in WAL mode and every entry is written in its own transaction, committed before the caller
gets its answer: a process killed with ``kill -9`` keeps every answer it received, and readers never wait
for writers. Entry count and bytes are kept by triggers in a one-row table, so the size cap costs no scan;
past the cap the least recently used entries go, in the transaction that stored the new one.

All SQLite work runs on one thread per store (per process), off the event loop; a call waits for its
lookup or its write, never for another process's transaction on the loop's thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from lmi.cache.errors import CacheError
from lmi.cache.store import CacheStats, CacheStore, Entry, Item
from lmi.exceptions import ConfigurationError

T = TypeVar("T")

APPLICATION_ID: Final = 0x4C4D4943  # "LMIC": marks the file as an lmi response cache
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_SECONDS: Final = 30.0
_MAX_VARIABLES: Final = 500  # keys per IN (...) query, well under SQLite's limit
_SCHEMA: Final = (
    """CREATE TABLE entries (
        key TEXT NOT NULL UNIQUE,
        value BLOB NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        cost_usd REAL NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        used_at REAL NOT NULL
    )""",
    "CREATE INDEX entries_used_at ON entries (used_at)",
    "CREATE INDEX entries_created_at ON entries (created_at)",
    """CREATE TABLE totals (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        entries INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        hits INTEGER NOT NULL,
        saved_usd REAL NOT NULL
    )""",
    "INSERT INTO totals VALUES (1, 0, 0, 0, 0.0)",
    """CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
        UPDATE totals SET entries = entries + 1, bytes = bytes + new.size WHERE id = 1;
    END""",
    """CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN
        UPDATE totals SET entries = entries - 1, bytes = bytes - old.size WHERE id = 1;
    END""",
    """CREATE TRIGGER entries_resized AFTER UPDATE OF size ON entries BEGIN
        UPDATE totals SET bytes = bytes + new.size - old.size WHERE id = 1;
    END""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_UPSERT: Final = (
    "INSERT INTO entries (key, value, kind, model, cost_usd, size, created_at, used_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
    " kind = excluded.kind, model = excluded.model, cost_usd = excluded.cost_usd, size = excluded.size,"
    " created_at = excluded.created_at, used_at = excluded.used_at"
)


def check_writable(path: Path) -> None:
    """Refuse, at construction, a cache file that could never be written (creating its directory)."""
    if path.is_dir():
        raise ConfigurationError(f"Response cache path {path} is a directory; name a file in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the directory of the response cache {path}: {exc}") from exc
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise ConfigurationError(f"Response cache {path} is not writable ({target} refuses writes)")


class SQLiteStore(CacheStore):
    def __init__(self, path: Path, *, max_bytes: int | None, ttl_seconds: float | None) -> None:
        self.path = path.expanduser().absolute()
        check_writable(self.path)
        self.location = str(self.path)
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._pid = 0
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.location!r})"

    # -- running SQLite work off the event loop ---------------------------------------------------------

    def _run(self, job: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._pid != os.getpid():  # a forked child: the parent's thread and connection are not ours
            with self._lock:
                if self._pid != os.getpid():
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="lmi-cache-sqlite")
                    self._connection = None
                    self._pid = os.getpid()
        assert self._executor is not None
        return asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, job, *args)

    def _guarded(self, job: Callable[..., T], *args: Any) -> T:
        try:
            return job(self._connect(), *args)
        except sqlite3.Error as exc:
            if self._connection is not None and self._connection.in_transaction:
                self._connection.rollback()
            raise CacheError(f"Response cache {self.location}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            self._connection = open_cache_file(self.path)
        return self._connection

    # -- the store ---------------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return await self._run(self._get_many, list(keys))

    async def put_many(self, items: Sequence[Item]) -> None:
        await self._run(self._put_many, list(items))

    async def count_hits(self, hits: int, saved_usd: float) -> None:
        await self._run(_count_hits, hits, saved_usd)

    async def stats(self) -> CacheStats:
        return await self._run(self.stats_now)

    async def clear(self, older_than_seconds: float | None = None) -> int:
        return await self._run(self.clear_now, older_than_seconds)

    async def aclose(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            await self._run(lambda connection: connection.close())
            self._connection = None

    # -- the work, on the store's thread (also used directly by the CLI) ---------------------------------

    def _get_many(self, connection: sqlite3.Connection, keys: list[str]) -> dict[str, Entry]:
        now = time.time()
        found: dict[str, Entry] = {}
        expired: list[str] = []
        oldest = now - self.ttl_seconds if self.ttl_seconds is not None else None
        for start in range(0, len(keys), _MAX_VARIABLES):
            chunk = keys[start : start + _MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, value, cost_usd, created_at FROM entries WHERE key IN ({marks})"
            for key, value, cost, created_at in connection.execute(query, chunk):
                if oldest is not None and created_at < oldest:
                    expired.append(key)
                else:
                    found[key] = Entry(value, cost)
        if not found and not expired:
            return found
        with _transaction(connection):
            for start in range(0, len(expired), _MAX_VARIABLES):
                chunk = expired[start : start + _MAX_VARIABLES]
                connection.execute(f"DELETE FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            hits = list(found)
            for start in range(0, len(hits), _MAX_VARIABLES):
                chunk = hits[start : start + _MAX_VARIABLES]
                marks = ",".join("?" * len(chunk))
                connection.execute(f"UPDATE entries SET used_at = ? WHERE key IN ({marks})", [now, *chunk])
            if found:
                saved = sum(entry.cost_usd for entry in found.values())
                connection.execute(
                    "UPDATE totals SET hits = hits + ?, saved_usd = saved_usd + ? WHERE id = 1",
                    (len(found), saved),
                )
        return found

    def _put_many(self, connection: sqlite3.Connection, items: list[Item]) -> None:
        for item in items:
            now = time.time()
            size = len(item.value) + len(item.key)
            with _transaction(connection):  # one transaction per entry: committed before we return
                row = (item.key, item.value, item.kind, item.model, item.cost_usd, size, now, now)
                connection.execute(_UPSERT, row)
                if self.max_bytes is not None:
                    self._evict(connection, item.key)

    def _evict(self, connection: sqlite3.Connection, keep: str) -> None:
        """Remove expired entries, then least recently used ones, until the store fits its cap."""
        (total,) = connection.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()
        assert self.max_bytes is not None
        if total <= self.max_bytes:
            return
        if self.ttl_seconds is not None:
            connection.execute("DELETE FROM entries WHERE created_at < ?", (time.time() - self.ttl_seconds,))
            (total,) = connection.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()
        excess, doomed = total - self.max_bytes, []
        for rowid, key, size in connection.execute("SELECT rowid, key, size FROM entries ORDER BY used_at"):
            if excess <= 0:
                break
            if key != keep:  # the entry just stored stays, even alone over the cap
                doomed.append(rowid)
                excess -= size
        for start in range(0, len(doomed), _MAX_VARIABLES):
            chunk = doomed[start : start + _MAX_VARIABLES]
            connection.execute(f"DELETE FROM entries WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)

    def stats_now(self, connection: sqlite3.Connection | None = None) -> CacheStats:
        connection = connection or self._connect()
        entries, size, hits, saved = connection.execute(
            "SELECT entries, bytes, hits, saved_usd FROM totals WHERE id = 1"
        ).fetchone()
        return CacheStats(self.location, entries, size, hits, saved, self.max_bytes, self.ttl_seconds)

    def clear_now(
        self, connection: sqlite3.Connection | None = None, older_than_seconds: float | None = None
    ) -> int:
        connection = connection or self._connect()
        with _transaction(connection):
            if older_than_seconds is None:
                cursor = connection.execute("DELETE FROM entries")
            else:
                cursor = connection.execute(
                    "DELETE FROM entries WHERE created_at < ?", (time.time() - older_than_seconds,)
                )
        return cursor.rowcount


def _count_hits(connection: sqlite3.Connection, hits: int, saved_usd: float) -> None:
    connection.execute(
        "UPDATE totals SET hits = hits + ?, saved_usd = saved_usd + ? WHERE id = 1", (hits, saved_usd)
    )


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error) on an autocommit connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.connection.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def open_cache_file(path: Path) -> sqlite3.Connection:
    """Open (creating if new) a cache file; CacheError naming it if it is corrupt or someone else's."""
    try:
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise CacheError(f"Cannot open the response cache {path}: {exc}") from exc
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        _check_or_create(connection, path)
        connection.execute("PRAGMA journal_mode = WAL")
        # Committed WAL frames survive a killed process; only an OS crash could lose the last few.
        connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException as exc:
        connection.close()
        if isinstance(exc, sqlite3.Error):
            raise CacheError(
                f"{path} is not a usable lmi response cache ({exc}); move it away or name another file"
            ) from exc
        raise
    return connection


def _check_or_create(connection: sqlite3.Connection, path: Path) -> None:
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id == APPLICATION_ID:
        _check_version(connection, path)
        return
    with _transaction(connection):  # creating: other processes may be creating it at the same moment
        (application_id,) = connection.execute("PRAGMA application_id").fetchone()
        if application_id == APPLICATION_ID:
            return
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
        if application_id != 0 or tables:
            raise CacheError(
                f"{path} is not an lmi response cache: it is an SQLite database of something else"
                f" (tables: {', '.join(tables[:5]) or 'none'}); name another file for the cache"
            )
        for statement in _SCHEMA:
            connection.execute(statement)


def _check_version(connection: sqlite3.Connection, path: Path) -> None:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        raise CacheError(
            f"{path} is an lmi response cache of format {version}, this lmi reads format {SCHEMA_VERSION}"
        )


__all__ = ["SQLiteStore", "check_writable", "open_cache_file"]
