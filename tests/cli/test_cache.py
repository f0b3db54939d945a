"""``lmi cache stats`` and ``lmi cache clear``, run as the installed command."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from lmi.cache import Item
from lmi.cache.sqlite import SQLiteStore
from tests.cli.conftest import RunLmi


def fill(path: Path, ages: list[float]) -> None:
    """Entries stored ``ages`` seconds ago (100 bytes of value each, cost 0.01), one hit on the first."""

    async def run() -> None:
        store = SQLiteStore(path, max_bytes=None, ttl_seconds=None)
        for index, _ in enumerate(ages):
            await store.put(Item(f"k{index}", b"x" * 100, 0.01, "chat", "gpt-4o-mini"))
        await store.get("k0")
        await store.aclose()

    asyncio.run(run())
    import sqlite3

    connection = sqlite3.connect(path)
    for index, age in enumerate(ages):
        connection.execute(
            "UPDATE entries SET created_at = ? WHERE key = ?", (time.time() - age, f"k{index}")
        )
    connection.commit()
    connection.close()


def fields(stdout: str) -> dict[str, str]:
    """``label  value`` lines (two or more spaces between) as a dict."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in stdout.splitlines())  # type: ignore[misc]


def test_stats_show_entries_size_hits_and_savings(run_lmi: RunLmi, tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path, [0, 0, 0])
    result = run_lmi("cache", "stats", "--cache", str(path))
    assert result.returncode == 0, result.stderr
    lines = fields(result.stdout)
    assert lines["response cache"] == str(path)
    assert lines["entries"] == "3"
    assert lines["size"].startswith("306 bytes")  # 3 x (100 value + 2 key)
    assert lines["hits"] == "1"
    assert lines["USD saved"] == "$0.0100"


def test_stats_follow_the_env_and_a_missing_file_is_empty(run_lmi: RunLmi, tmp_path: Path) -> None:
    result = run_lmi("cache", "stats", env={"LMI_CACHE": str(tmp_path / "none.db")})
    assert result.returncode == 0, result.stderr
    assert "0 (no file yet)" in result.stdout
    assert not (tmp_path / "none.db").exists()


def test_clear_older_than_then_all(run_lmi: RunLmi, tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path, [40 * 86400, 31 * 86400, 3600])
    result = run_lmi("cache", "clear", "--older-than", "30d", env={"LMI_CACHE": f"sqlite:///{path}"})
    assert result.returncode == 0, result.stderr
    assert "Removed 2 entries stored more than 30d ago" in result.stdout
    result = run_lmi("cache", "clear", "--cache", str(path))
    assert "Removed 1 entry from" in result.stdout
    assert fields(run_lmi("cache", "stats", "--cache", str(path)).stdout)["entries"] == "0"


def test_bad_input_is_one_clear_line(run_lmi: RunLmi, tmp_path: Path) -> None:
    result = run_lmi("cache", "clear", "--older-than", "a while", "--cache", str(tmp_path / "c.db"))
    assert result.returncode == 2
    assert "--older-than" in result.stderr
    assert "Traceback" not in result.stderr
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"not a database" * 100)
    result = run_lmi("cache", "stats", "--cache", str(foreign))
    assert result.returncode == 1
    assert str(foreign) in result.stderr
    assert "Traceback" not in result.stderr
