"""Writes cost records for the ``lmi cost`` tests: ``python ledger_writer.py PATH WORKER COUNT [ISO_TIME]``.

Without ISO_TIME the records go through ``GLOBAL_COST_TRACKER`` with the ledger enabled, as a program's
calls would; with it, straight to the ledger with that timestamp (for ``--since`` and ``--by day``).
"""

from __future__ import annotations

import sys
from datetime import datetime

from lmi.cost import GLOBAL_COST_TRACKER, CostRecord, enable_cost_ledger, enable_cost_tracking, ledger
from lmi.types import TokenUsage


def record_values(worker: int, index: int) -> tuple[str, TokenUsage, float]:
    """Deterministic values; costs are multiples of 2**-16, so their sums are exact in any order."""
    usage = TokenUsage(
        prompt_tokens=1000 + index, completion_tokens=10 * worker + 1, cache_read_tokens=index % 5
    )
    return f"model-{worker % 2}", usage, (index + 1 + worker) * 2**-16


def main() -> None:
    path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    at = datetime.fromisoformat(sys.argv[4]) if len(sys.argv) > 4 else None
    enable_cost_ledger(path)
    enable_cost_tracking()
    for index in range(count):
        model, usage, cost = record_values(worker, index)
        if at is None:
            GLOBAL_COST_TRACKER.record(model, usage, cost, tag=f"worker-{worker}")
        else:
            ledger.append(
                CostRecord(model=model, usage=usage, cost_usd=cost, tag=f"worker-{worker}", timestamp=at)
            )


if __name__ == "__main__":
    main()
