"""The SQLite store beyond what every store does (test_store.py): clearing by age, bad files, many processes
writing at once, hit statistics written behind."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lmi.cache import CacheError, Item, open_cache
from lmi.cache import sqlite as sqlite_store
from lmi.cache.sqlite import SQLiteStore
from lmi.exceptions import ConfigurationError

SRC = Path(__file__).resolve().parents[2] / "src"
WRITER = """
import asyncio, sys
from pathlib import Path
from lmi.cache.sqlite import SQLiteStore
from lmi.cache.store import Item

async def main(path, worker, count):
    store = SQLiteStore(Path(path), max_bytes=None, ttl_seconds=None)
    for i in range(count):
        await store.put(Item(f"{worker}-{i}", b"x" * (i % 50), 0.001, "chat", "m"))
        found = await store.get(f"{worker}-{i}")
        assert found is not None and found.value == b"x" * (i % 50)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def item(key: str, size: int = 100, cost: float = 0.5) -> Item:
    return Item(key, b"v" * size, cost, "chat", "model-a")


async def test_clear_all_or_older_than(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(sqlite_store, "time", Clock)
    store = SQLiteStore(tmp_path / "c.db", max_bytes=None, ttl_seconds=None)
    await store.put(item("a"))
    now[0] += 86400 * 31
    await store.put(item("b"))
    assert await store.clear(older_than_seconds=86400 * 30) == 1
    assert set(await store.get_many(["a", "b"])) == {"b"}
    assert await store.clear() == 1
    stats = await store.stats()
    assert (stats.entries, stats.size_bytes) == (0, 0)


async def test_foreign_sqlite_file_is_named_at_first_use(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (id INTEGER)")
    connection.commit()
    connection.close()
    store = SQLiteStore(path, max_bytes=None, ttl_seconds=None)  # construction does not open it
    with pytest.raises(CacheError, match=rf"{path}.*not an lmi response cache.*users"):
        await store.get("a")
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]


async def test_corrupt_file_is_named_at_first_use(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database, just some text\n" * 100)
    store = SQLiteStore(path, max_bytes=None, ttl_seconds=None)
    with pytest.raises(CacheError, match=rf"{path}.*not a usable lmi response cache"):
        await store.put(item("a"))
    assert path.read_bytes().startswith(b"this is not a database")


async def test_damaged_pages_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SQLiteStore(path, max_bytes=None, ttl_seconds=None)
    for key in range(200):
        await store.put(item(str(key), size=2000))
    await store.aclose()
    data = bytearray(path.read_bytes())
    data[8192:] = b"\xff" * (len(data) - 8192)  # pages after the second: garbage
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
    fresh = SQLiteStore(path, max_bytes=10, ttl_seconds=None)

    async def use() -> None:
        await fresh.get_many([str(key) for key in range(200)])
        await fresh.put(item("new"))

    with pytest.raises(CacheError, match=str(path)):
        await use()


def test_unwritable_location_is_refused_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="a-file"):
        open_cache(str(blocker / "cache.db"))
    with pytest.raises(ConfigurationError, match="is a directory"):
        open_cache(str(tmp_path))


def test_read_only_file_is_refused_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    path.write_bytes(b"")
    path.chmod(0o444)
    if sqlite_store.os.access(path, sqlite_store.os.W_OK):
        pytest.skip("running as root: permissions do not stop writes")
    with pytest.raises(ConfigurationError, match="not writable"):
        SQLiteStore(path, max_bytes=None, ttl_seconds=None)


async def test_many_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    src = str(SRC)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), str(worker), "150", env={"PYTHONPATH": src}
        )
        for worker in range(4)
    ]
    assert [await worker.wait() for worker in workers] == [0, 0, 0, 0]
    store = SQLiteStore(path, max_bytes=None, ttl_seconds=None)
    keys = [f"{worker}-{i}" for worker in range(4) for i in range(150)]
    found = await store.get_many(keys)
    assert len(found) == 600
    stats = await store.stats()
    assert stats.entries == 600
    assert stats.size_bytes == sum(len(key) + i % 50 for key, i in ((k, int(k.split("-")[1])) for k in keys))
    assert stats.hits == 600 + 600


async def test_one_store_per_location(tmp_path: Path) -> None:
    assert open_cache(tmp_path / "x.db") is open_cache(f"sqlite:///{tmp_path}/x.db")
    assert open_cache(tmp_path / "x.db") is not open_cache(str(tmp_path / "y.db"))


def totals_on_disk(path: Path) -> tuple[int, float]:
    """Hits and USD saved as another process would read them (not through the store)."""
    connection = sqlite3.connect(path)
    try:
        row: tuple[int, float] = connection.execute("SELECT hits, saved_usd FROM totals").fetchone()
        return row
    finally:
        connection.close()


async def test_hit_statistics_are_written_behind_within_the_flush_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "FLUSH_SECONDS", 0.05)
    store = SQLiteStore(tmp_path / "c.db", max_bytes=None, ttl_seconds=None)
    await store.put(item("a", cost=0.25))
    written = asyncio.Event()
    loop = asyncio.get_running_loop()
    flush = store._flush

    def signalling_flush(connection: sqlite3.Connection) -> None:  # on whichever thread writes
        flush(connection)
        loop.call_soon_threadsafe(written.set)

    monkeypatch.setattr(store, "_flush", signalling_flush)
    assert await store.get("a") is not None
    assert await store.get_many(["a", "missing"]) != {}
    assert totals_on_disk(store.path) == (0, 0.0)  # not yet: written behind
    await asyncio.wait_for(written.wait(), timeout=10)
    assert totals_on_disk(store.path) == (2, pytest.approx(0.5))


async def test_a_lookup_reads_on_the_calling_thread(tmp_path: Path) -> None:
    """Hits need no hop to the store's thread (the thread only writes, and reads big batches)."""
    store = SQLiteStore(tmp_path / "c.db", max_bytes=None, ttl_seconds=None)
    await store.put(item("a"))
    store._executor.shutdown()  # type: ignore[union-attr]  # any job sent to it now fails
    assert (await store.get("a")) is not None
    assert set(await store.get_many(["a", "b"])) == {"a"}
    with pytest.raises(RuntimeError, match="shutdown"):
        await store.stats()


def test_hit_statistics_reach_the_file_at_exit(tmp_path: Path) -> None:
    """A process that forgets its store (no aclose) still writes its hits and last-use times at exit."""
    path = tmp_path / "c.db"
    code = (
        "import asyncio, sys\nfrom pathlib import Path\nfrom lmi.cache.sqlite import SQLiteStore\n"
        "from lmi.cache.store import Item\n"
        "async def main():\n"
        "    store = SQLiteStore(Path(sys.argv[1]), max_bytes=None, ttl_seconds=None)\n"
        "    await store.put(Item('a', b'v', 0.5, 'chat', 'm'))\n"
        "    for _ in range(3):\n"
        "        assert await store.get('a') is not None\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env={"PYTHONPATH": str(SRC)}, check=True)
    assert totals_on_disk(path) == (3, pytest.approx(1.5))
    connection = sqlite3.connect(path)
    created, used = connection.execute("SELECT created_at, used_at FROM entries").fetchone()
    connection.close()
    assert used > created


async def test_hits_are_kept_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db", max_bytes=None, ttl_seconds=None)
    await store.put(item("a", cost=0.25))
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer elsewhere: the loop's thread must not wait for it
    try:
        assert await store.get("a") is not None
        flushing = asyncio.create_task(store.flush())
        await asyncio.sleep(0.2)
        assert not flushing.done()  # waiting on the store's thread ...
        assert await store.get("a") is not None  # ... while lookups go on
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(flushing, 30)
    assert totals_on_disk(store.path) == (1, pytest.approx(0.25))  # the hit it took
    await store.flush()
    assert totals_on_disk(store.path) == (2, pytest.approx(0.5))


async def test_aclose_writes_the_hits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db", max_bytes=None, ttl_seconds=None)
    await store.put(item("a", cost=0.25))
    assert await store.get("a") is not None
    await store.count_hits(1, 0.25)  # a caller that shared an identical request's answer
    await store.aclose()
    assert totals_on_disk(store.path) == (2, pytest.approx(0.5))
    assert await store.get("a") is not None  # still usable: connections reopen
    assert (await store.stats()).hits == 3
