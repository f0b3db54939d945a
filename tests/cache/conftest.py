"""Cache tests: a fresh cost state, the Redis fixtures of the limiter tests, and stores in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmi.cost import GLOBAL_COST_TRACKER, ledger, tracker
from tests.rate_limiter.conftest import private_redis_server, redis_server, redis_url  # noqa: F401


@pytest.fixture(autouse=True)
def clean_cost_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    monkeypatch.setattr(ledger, "_LEDGER", ledger._Ledger())
    monkeypatch.setattr(tracker, "_process_default", None)
    GLOBAL_COST_TRACKER.reset()
    yield
    ledger._LEDGER.configure(None)
    GLOBAL_COST_TRACKER.reset()
