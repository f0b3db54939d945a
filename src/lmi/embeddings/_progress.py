"""An optional progress bar (tqdm, the ``progress`` extra) for embedding runs of many batches."""

from __future__ import annotations

import sys
from typing import Any, Protocol

# With ``progress`` unset, a bar appears only for runs this long, and only on an interactive stderr.
AUTO_PROGRESS_MIN_BATCHES = 10


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, enabled: bool | None, description: str) -> Progress:
    """A bar counting ``total`` batches on stderr.

    ``enabled=True`` always shows one (needs tqdm), ``False`` never does, ``None`` shows one when tqdm is
    installed, stderr is a terminal and there are at least ``AUTO_PROGRESS_MIN_BATCHES`` batches.
    """
    if enabled is False or total == 0:
        return _NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        if enabled:
            raise ImportError("a progress bar needs tqdm: pip install 'lmi[progress]'") from exc
        return _NoProgress()
    if enabled is None and (total < AUTO_PROGRESS_MIN_BATCHES or not sys.stderr.isatty()):
        return _NoProgress()
    bar: Progress = tqdm(total=total, desc=description, unit="batch", file=sys.stderr)
    return bar
