"""The SQLite store: one file, shared safely by every process on the machine.

The file is in WAL mode and every entry is written in its own transaction, committed before the caller
gets its answer: a process killed with ``kill -9`` keeps every answer it received, and readers never wait
for writers. Entry count and bytes are kept by triggers in a one-row table, so the size cap costs no scan;
past the cap the least recently used entries go, in the transaction that stored the new one.

A lookup of a few keys reads on the caller's thread (a few microseconds: WAL readers take no lock and
never wait; if SQLite says busy, the lookup goes to the store's thread). Writes run on one thread per
store (per process), off the event loop. What a hit changes (the entry's last-used time, the hit count
and USD saved, and the removal of an entry found expired) is written behind (:class:`_Uses`): in one
transaction at most a second later, before this process stores an entry (so eviction sees its hits),
before ``stats()``, at ``aclose()`` and at interpreter exit. A process killed with ``kill -9`` so loses at
most its last second of hit statistics, never an answer; other processes see its hits up to a second
late (least-recently-used order across processes is that approximate).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from lmi.cache.errors import CacheError
from lmi.cache.sqlite_file import check_writable, open_cache_file, transaction
from lmi.cache.store import CacheStats, CacheStore, Entry, Item

T = TypeVar("T")
logger = logging.getLogger(__name__)

_MAX_VARIABLES: Final = 500  # keys per IN (...) query, well under SQLite's limit
_READ_MAP_BYTES: Final = 2**34  # address space only: the OS shares the file's cached pages
_KEYS_READ_IN_PLACE: Final = 64  # lookups of more keys go to the store's thread
_FLUSH_HERE_MAX: Final = 512  # entries touched: more are written on the store's thread
_WAL_CHECKPOINT_BYTES: Final = 4 * 2**20  # SQLite's own automatic checkpoint: 1000 pages of 4 KiB
FLUSH_SECONDS: Final = 1.0  # what hits changed is written at most this late (while the loop runs)
_SELECT_ONE: Final = "SELECT key, value, cost_usd, created_at FROM entries WHERE key = ?"
_SELECT_MANY: Final = "SELECT key, value, cost_usd, created_at FROM entries WHERE key IN"
_UPSERT: Final = (
    "INSERT INTO entries (key, value, kind, model, cost_usd, size, created_at, used_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
    " kind = excluded.kind, model = excluded.model, cost_usd = excluded.cost_usd, size = excluded.size,"
    " created_at = excluded.created_at, used_at = excluded.used_at"
)


class _Uses:
    """What hits changed and is not written yet (see the module's docstring), taken whole by a flush."""

    __slots__ = ("expired", "hits", "saved_usd", "touched")

    def __init__(self) -> None:
        self.touched: dict[str, float] = {}  # key -> when last used
        self.expired: set[str] = set()
        self.hits = 0
        self.saved_usd = 0.0

    def __bool__(self) -> bool:
        return bool(self.hits or self.touched or self.expired)

    def merge(self, other: _Uses) -> None:
        for key, used_at in other.touched.items():
            self.touched[key] = max(used_at, self.touched.get(key, used_at))
        self.expired |= other.expired
        self.hits += other.hits
        self.saved_usd += other.saved_usd


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
        self._connection: sqlite3.Connection | None = None  # the writer, on the store's thread
        self._readers = threading.local()  # per thread: (pid, connection) for lookups on that thread
        self._opened = False  # the file was checked (or created) by this process: readers may open it
        self._uses = _Uses()
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled, if any

    def __repr__(self) -> str:
        return f"SQLiteStore({self.location!r})"

    # -- running SQLite work off the event loop ---------------------------------------------------------

    def _run(self, job: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        self._check_pid()
        assert self._executor is not None
        return asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, job, *args)

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread, connection, uses are not ours
            with self._lock:
                if self._pid != os.getpid():
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="lmi-cache-sqlite")
                    self._connection = None
                    self._uses = _Uses()
                    self._flush_loop = None
                    self._pid = os.getpid()

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
            self._opened = True
        return self._connection

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's connection (None until the store's thread has checked the file): lookups, and
        small flushes of hit statistics when the write lock is free (it never waits, never checkpoints)."""
        if self._pid != os.getpid():
            self._check_pid()
            return None
        if not self._opened:
            return None
        found: tuple[int, sqlite3.Connection] | None = getattr(self._readers, "connection", None)
        if found is not None and found[0] == self._pid:
            return found[1]
        try:
            connection = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA wal_autocheckpoint = 0")  # the store's thread checkpoints
            connection.execute("PRAGMA synchronous = NORMAL")  # as the store's: no fsync per commit
            # Pages read through a memory map, without a system call each: a lookup in a file of a
            # million entries costs about what it costs in one of a thousand (bench/cache_bench.py).
            connection.execute(f"PRAGMA mmap_size = {_READ_MAP_BYTES}")
        except sqlite3.Error:
            return None  # the store's thread will name the problem
        self._readers.connection = (self._pid, connection)
        return connection

    # -- the store ---------------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        reader = self._reader()
        if reader is None:
            return await super().get(key)
        try:
            rows = reader.execute(_SELECT_ONE, (key,)).fetchall()
        except sqlite3.Error:  # busy, or a damaged file: the store's thread waits, or names it
            return await super().get(key)
        if not rows:
            return None
        _, value, cost, created_at = rows[0]
        if self.ttl_seconds is not None and created_at < time.time() - self.ttl_seconds:
            self._note({}, [key], hits=0, saved_usd=0.0)
            return None
        self._note_hit(key, cost)
        return Entry(value, cost)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        reader = self._reader() if len(keys) <= _KEYS_READ_IN_PLACE else None
        try:
            if reader is None:
                raise sqlite3.OperationalError("many keys: read on the store's thread")
            found, expired = self._read(reader, keys)
        except sqlite3.Error:  # busy, or a damaged file: the store's thread waits, or names it
            found, expired = await self._run(self._read, list(keys))
        if found or expired:
            self._note(found, expired, hits=len(found), saved_usd=sum(e.cost_usd for e in found.values()))
        return found

    async def put_many(self, items: Sequence[Item]) -> None:
        await self._run(self._put_many, list(items))

    async def count_hits(self, hits: int, saved_usd: float) -> None:
        self._check_pid()
        self._note({}, [], hits=hits, saved_usd=saved_usd)

    async def flush(self) -> None:
        """Write what hits changed now, rather than within the second (see the module's docstring)."""
        if self._uses and not self._flush_here():
            await self._run(self._flush)

    async def stats(self) -> CacheStats:
        return await self._run(self.stats_now)

    async def clear(self, older_than_seconds: float | None = None) -> int:
        return await self._run(self.clear_now, older_than_seconds)

    async def aclose(self) -> None:
        reader: tuple[int, sqlite3.Connection] | None = getattr(self._readers, "connection", None)
        if reader is not None:
            reader[1].close()
            del self._readers.connection
        if self._pid == os.getpid() and (self._connection is not None or self._uses):
            await self._run(self._close)

    # -- hits, written behind ------------------------------------------------------------------------------

    def _note(self, found: dict[str, Entry], expired: list[str], *, hits: int, saved_usd: float) -> None:
        now = time.time()
        with self._lock:
            uses = self._uses
            if not uses:
                _hold(self)
            for key in found:
                uses.touched[key] = now
            uses.expired.update(expired)
            uses.hits += hits
            uses.saved_usd += saved_usd
            self._schedule_flush()

    def _note_hit(self, key: str, cost_usd: float) -> None:
        """``_note`` of one hit, the common case, lean."""
        now = time.time()
        with self._lock:
            uses = self._uses
            if not uses:
                _hold(self)
            uses.touched[key] = now
            uses.hits += 1
            uses.saved_usd += cost_usd
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """A flush in a second, unless one is due on a running loop already (under ``_lock``)."""
        scheduled = self._flush_loop
        if scheduled is not None and not scheduled.is_closed():
            return
        self._flush_loop = loop = asyncio.get_running_loop()
        loop.call_later(FLUSH_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        if not self._flush_here():
            assert self._executor is not None
            self._executor.submit(self._flush_logged)

    def _flush_here(self) -> bool:
        """Flush on this thread when that is quick: a few hundred entries touched, and the write lock free
        this instant (no hop to the store's thread); False when the store's thread must do it."""
        uses = self._uses
        connection = self._reader() if len(uses.touched) + len(uses.expired) <= _FLUSH_HERE_MAX else None
        if connection is None:
            return False
        try:
            self._flush(connection)
        except sqlite3.Error:  # busy: another writer holds the lock (the uses were kept)
            return False
        try:
            grown = os.path.getsize(f"{self.path}-wal") > _WAL_CHECKPOINT_BYTES
        except OSError:
            grown = False
        if grown:  # this connection never checkpoints: in a process that only hits, the store's thread does
            assert self._executor is not None
            self._executor.submit(self._guarded, _checkpoint)
        return True

    def _flush_logged(self) -> None:
        try:
            self._guarded(self._flush)
        except CacheError:
            logger.warning("Could not record response cache hits", exc_info=True)

    def _flush(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            uses, self._uses, self._flush_loop = self._uses, _Uses(), None
            _unflushed.discard(self)
        if not uses:
            return
        try:
            with transaction(connection):
                _write_uses(connection, uses, self.ttl_seconds)
        except BaseException:
            with self._lock:  # kept for the next flush: statistics are not dropped on a busy moment
                if not self._uses:
                    _hold(self)
                self._uses.merge(uses)
            raise

    def _close(self, connection: sqlite3.Connection) -> None:
        try:
            self._flush(connection)
        finally:
            connection.close()
            self._connection = None

    def flush_at_exit(self) -> None:
        if self._pid == os.getpid() and self._uses:
            self._flush_logged()

    # -- the work, on the store's thread (also used directly by the CLI) ---------------------------------

    def _read(
        self, connection: sqlite3.Connection, keys: Sequence[str]
    ) -> tuple[dict[str, Entry], list[str]]:
        """The live entries among ``keys``, and those found expired."""
        found: dict[str, Entry] = {}
        expired: list[str] = []
        oldest = time.time() - self.ttl_seconds if self.ttl_seconds is not None else None
        if len(keys) == 1:
            rows = connection.execute(_SELECT_ONE, (keys[0],))
            _sort(rows, found, expired, oldest)
            return found, expired
        for start in range(0, len(keys), _MAX_VARIABLES):
            chunk = keys[start : start + _MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(f"{_SELECT_MANY} ({marks})", chunk)
            _sort(rows, found, expired, oldest)
        return found, expired

    def _put_many(self, connection: sqlite3.Connection, items: list[Item]) -> None:
        if self.max_bytes is not None:
            self._flush(connection)  # eviction goes by last use: this process's hits count
        for item in items:
            now = time.time()
            size = len(item.value) + len(item.key)
            with transaction(connection):  # one transaction per entry: committed before we return
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
        self._flush(connection)
        entries, size, hits, saved = connection.execute(
            "SELECT entries, bytes, hits, saved_usd FROM totals WHERE id = 1"
        ).fetchone()
        return CacheStats(self.location, entries, size, hits, saved, self.max_bytes, self.ttl_seconds)

    def clear_now(
        self, connection: sqlite3.Connection | None = None, older_than_seconds: float | None = None
    ) -> int:
        connection = connection or self._connect()
        with transaction(connection):
            if older_than_seconds is None:
                cursor = connection.execute("DELETE FROM entries")
            else:
                cursor = connection.execute(
                    "DELETE FROM entries WHERE created_at < ?", (time.time() - older_than_seconds,)
                )
        return cursor.rowcount


def _sort(rows: Any, found: dict[str, Entry], expired: list[str], oldest: float | None) -> None:
    for key, value, cost, created_at in rows:
        if oldest is not None and created_at < oldest:
            expired.append(key)
        else:
            found[key] = Entry(value, cost)


def _write_uses(connection: sqlite3.Connection, uses: _Uses, ttl_seconds: float | None) -> None:
    """Apply what hits changed: last-used times, expired entries gone, the hit count and USD saved."""
    if uses.expired and ttl_seconds is not None:  # unless stored again since
        oldest = time.time() - ttl_seconds
        expired = list(uses.expired)
        for start in range(0, len(expired), _MAX_VARIABLES):
            chunk = expired[start : start + _MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            connection.execute(
                f"DELETE FROM entries WHERE created_at < ? AND key IN ({marks})", [oldest, *chunk]
            )
    if uses.touched:
        connection.executemany(
            "UPDATE entries SET used_at = max(used_at, ?) WHERE key = ?",
            ((used_at, key) for key, used_at in uses.touched.items()),
        )
    if uses.hits:
        connection.execute(
            "UPDATE totals SET hits = hits + ?, saved_usd = saved_usd + ? WHERE id = 1",
            (uses.hits, uses.saved_usd),
        )


def _checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")


# Stores holding unwritten hits, kept alive (even when their models are gone) to be flushed at exit.
_unflushed: set[SQLiteStore] = set()


def _hold(store: SQLiteStore) -> None:
    """Keep ``store`` until its hits are written (called under its lock when it first holds some)."""
    if not _exit_hook:
        _exit_hook.append(atexit.register(_flush_all))
    _unflushed.add(store)


_exit_hook: list[Callable[[], None]] = []


def _flush_all() -> None:
    for store in list(_unflushed):
        store.flush_at_exit()


__all__ = ["SQLiteStore", "check_writable", "open_cache_file"]
