"""Independent checks of recorded acquisitions (they do not use the limiter's code)."""

from __future__ import annotations

from collections.abc import Iterable


def max_in_any_window(events: Iterable[tuple[float, int]], window_seconds: float) -> int:
    """The largest total weight of ``(time, weight)`` events inside any window ``(t - window, t]``.

    The maximum over all windows is reached by a window ending at some event, so only those are checked.
    """
    ordered = sorted(events)
    best = running = 0
    first = 0
    for time_i, weight_i in ordered:
        running += weight_i
        while ordered[first][0] <= time_i - window_seconds:
            running -= ordered[first][1]
            first += 1
        best = max(best, running)
    return best
