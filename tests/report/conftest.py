"""Every report test starts with no ledger configured and tracking at its default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmi.cost import ledger, tracker


@pytest.fixture(autouse=True)
def clean_cost_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    monkeypatch.setattr(ledger, "_LEDGER", ledger._Ledger())
    monkeypatch.setattr(tracker, "_process_default", None)
    yield
    ledger._LEDGER.configure(None)
