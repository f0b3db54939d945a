"""Figures measured by the reliability tests, printed in pytest's terminal summary."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record(name: str, value: str) -> None:
    """Keep one measured figure (shown after the run, also when the test passes)."""
    FIGURES[name] = value
