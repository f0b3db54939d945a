"""Cost of pricing and recording one call, side by side with a reference.

    python bench/cost_bench.py

1. ``lmi.cost.usage_cost`` against litellm's own ``cost_per_token`` on the same billed usage.
2. ``GLOBAL_COST_TRACKER.record`` with the SQLite ledger on, against recording in memory only.

Both are measured interleaved in short rounds in one process; the figure is the median of per-round
ratios (the machine is small and noisy).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from lmi._lazy import litellm
from lmi.cost import (
    GLOBAL_COST_TRACKER,
    enable_cost_ledger,
    enable_cost_tracking,
    usage_cost,
)
from lmi.types import TokenUsage

MODEL = "claude-sonnet-4-5-20250929"
USAGE = TokenUsage(
    prompt_tokens=2704, completion_tokens=122, cache_read_tokens=2611, cache_creation_tokens=90
)


def per_call_seconds(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def compare(name: str, ours: Callable[[], object], reference: Callable[[], object], calls: int) -> None:
    ours(), reference()  # warm caches
    ratios, ours_times, reference_times = [], [], []
    for _ in range(15):
        t_ours = per_call_seconds(ours, calls)
        t_ref = per_call_seconds(reference, calls)
        ours_times.append(t_ours)
        reference_times.append(t_ref)
        ratios.append(t_ours / t_ref)
    print(
        f"{name}: {statistics.median(ours_times) * 1e6:8.2f} µs vs reference "
        f"{statistics.median(reference_times) * 1e6:8.2f} µs  (median ratio {statistics.median(ratios):.3f})"
    )


def litellm_cost() -> float:
    from litellm.types.utils import PromptTokensDetailsWrapper, Usage

    usage = Usage(
        prompt_tokens=USAGE.prompt_tokens,
        completion_tokens=USAGE.completion_tokens,
        total_tokens=USAGE.total_tokens,
        prompt_tokens_details=PromptTokensDetailsWrapper(
            cached_tokens=USAGE.cache_read_tokens, cache_creation_tokens=USAGE.cache_creation_tokens
        ),
        cache_read_input_tokens=USAGE.cache_read_tokens,
        cache_creation_input_tokens=USAGE.cache_creation_tokens,
    )
    prompt, completion = litellm().cost_per_token(model=MODEL, usage_object=usage)
    return float(prompt + completion)


def main() -> None:
    ours = usage_cost(MODEL, USAGE)
    reference = litellm_cost()
    print(f"same price: lmi {ours:.12f} USD, litellm {reference:.12f} USD")
    compare("usage_cost vs litellm.cost_per_token", lambda: usage_cost(MODEL, USAGE), litellm_cost, 200)

    enable_cost_tracking()
    with tempfile.TemporaryDirectory() as directory:
        ledger_file = Path(directory) / "ledger.sqlite"

        def record_batch(ledger_on: bool, calls: int) -> float:
            enable_cost_ledger(ledger_file if ledger_on else None)
            record = GLOBAL_COST_TRACKER.record
            return per_call_seconds(lambda: record(MODEL, USAGE, ours, tag="bench"), calls)

        ratios, on_times, off_times = [], [], []
        for _ in range(15):
            on = record_batch(True, 300)
            off = record_batch(False, 300)
            on_times.append(on)
            off_times.append(off)
            ratios.append(on / off)
        print(
            f"record with ledger: {statistics.median(on_times) * 1e6:8.2f} µs vs in-memory only "
            f"{statistics.median(off_times) * 1e6:8.2f} µs  (median ratio {statistics.median(ratios):.1f})"
        )
        enable_cost_ledger(None)


if __name__ == "__main__":
    main()
