"""The cache file itself: its schema, and opening it (creating it, or refusing one that is not ours).

The file is marked as an lmi response cache (``PRAGMA application_id``) with its format version
(``user_version``); entry count and bytes are kept by triggers in a one-row table, so the size cap costs
no scan. Opened in WAL mode with ``synchronous = NORMAL``: committed transactions survive a killed process.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Final

from lmi.cache.errors import CacheError
from lmi.exceptions import ConfigurationError

APPLICATION_ID: Final = 0x4C4D4943  # "LMIC": marks the file as an lmi response cache
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_SECONDS: Final = 30.0
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


class transaction:
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
    with transaction(connection):  # creating: other processes may be creating it at the same moment
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


__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_SECONDS",
    "SCHEMA_VERSION",
    "check_writable",
    "open_cache_file",
    "transaction",
]
