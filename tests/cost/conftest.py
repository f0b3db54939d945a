"""Every cost test starts with tracking at its default, an empty global tracker and no ledger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmi.cost import GLOBAL_COST_TRACKER, ledger, tracker


@pytest.fixture(autouse=True)
def clean_cost_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    monkeypatch.setattr(ledger, "_LEDGER", ledger._Ledger())
    monkeypatch.setattr(tracker, "_process_default", None)
    GLOBAL_COST_TRACKER.reset()
    yield
    ledger._LEDGER.configure(None)  # close this test's connection
    GLOBAL_COST_TRACKER.reset()
