"""A ledger-writing process for the multi-process tests: ``python ledger_writer.py PATH WORKER COUNT``.

Records ``COUNT`` calls (forever when COUNT is 0) tagged ``WORKER:i`` and prints ``i`` once each record
has returned, i.e. once it is committed.
"""

from __future__ import annotations

import itertools
import sys

from lmi.cost import GLOBAL_COST_TRACKER, enable_cost_ledger, enable_cost_tracking
from lmi.types import TokenUsage


def usage_for(worker: int, index: int) -> tuple[str, TokenUsage, float]:
    """Deterministic per-record values, so the parent can recompute what every row must hold."""
    usage = TokenUsage(
        prompt_tokens=100 + index,
        completion_tokens=worker + 1,
        cache_read_tokens=index % 7,
        cache_creation_tokens=index % 3,
        reasoning_tokens=index % 2,
    )
    return f"model-{worker % 2}", usage, (index + 1) * 1e-6 + worker * 1e-9


def main() -> None:
    path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    enable_cost_ledger(path)
    enable_cost_tracking()
    indices = itertools.count() if count == 0 else range(count)
    for index in indices:
        model, usage, cost = usage_for(worker, index)
        GLOBAL_COST_TRACKER.record(model, usage, cost, tag=f"{worker}:{index}")
        print(index, flush=True)


if __name__ == "__main__":
    main()
