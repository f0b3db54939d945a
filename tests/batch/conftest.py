"""Fixtures for batch tests: a loopback batch server answering from recordings, and a fresh state dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batch.servers import BatchServer

OPENAI_RECORDINGS = [
    "openai-chat-887c4f",
    "openai-chat-ea3a00",
    "openai-chat-634cf7",
    "openai-chat-tools-3055a4",
]
ANTHROPIC_RECORDINGS = [
    "anthropic-messages-29fd16",
    "anthropic-messages-5b2c77",
    "anthropic-messages-cache-218dab",
]


@pytest.fixture
def batch_server() -> Iterator[BatchServer]:
    server = BatchServer(OPENAI_RECORDINGS + ANTHROPIC_RECORDINGS).start()
    yield server
    server.stop()


@pytest.fixture
def batch_dir(tmp_path: Path) -> Path:
    return tmp_path / "batches"


def price_map_entry(model: str) -> dict[str, object]:
    """litellm's bundled price map entry, read from the JSON file itself (not through lmi's pricing)."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("litellm")
    assert spec is not None
    assert spec.origin is not None
    path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    entry: dict[str, object] = json.loads(path.read_text())[model]
    return entry


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches here finish in a few polls: keep the backoff short so a loaded machine never waits long."""
    monkeypatch.setenv("LMI_BATCH_MAX_POLL_INTERVAL", "0.05")
