"""Fixtures of the fault suite: a private replay server, and the figures printed after the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.figures import FIGURES
from tests.replay import ReplayServer


@pytest.fixture
def private_replay() -> Iterator[ReplayServer]:
    """A replay server of this test alone, so that every socket to its port belongs to this test."""
    server = ReplayServer().start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
