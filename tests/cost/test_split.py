"""n>1 results split the bill exactly: costs add up bit for bit, token counts to the integer."""

from __future__ import annotations

import math
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from lmi.cost import clear_model_prices, set_model_prices, split_cost, usage_cost
from lmi.llms.results import Choice, Completion, build_results
from lmi.types import TokenUsage

RATES = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False, allow_infinity=False)
TOKENS = st.integers(min_value=0, max_value=2_000_000)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=16),
    prompt=TOKENS,
    completion=TOKENS,
    cache_fraction=st.floats(min_value=0, max_value=1),
    input_rate=RATES,
    output_rate=RATES,
    cache_rate=RATES,
)
def test_results_of_one_call_sum_to_its_bill_exactly(
    n: int,
    prompt: int,
    completion: int,
    cache_fraction: float,
    input_rate: float,
    output_rate: float,
    cache_rate: float,
) -> None:
    model = f"split-{uuid.uuid4().hex[:8]}"
    set_model_prices(model, input_rate, output_rate, cache_read_per_token=cache_rate)
    try:
        usage = TokenUsage(prompt, completion, cache_read_tokens=int(prompt * cache_fraction))
        completion_ = Completion([Choice(text=f"answer {i}") for i in range(n)], usage, response_model=model)
        results, _billed, cost = build_results(
            completion_, name=model, requested_model=model, prompt=None, started=0.0, finished=1.0
        )
        assert cost == usage_cost(model, usage)
        assert sum(r.cost for r in results) == cost  # Python's own sum, left to right
        assert sum(reversed([r.cost for r in results])) == cost
        assert math.fsum(r.cost for r in results) == cost
        assert all(r.cost >= 0 for r in results)
        assert sum(r.prompt_count for r in results) == prompt
        assert sum(r.completion_count for r in results) == completion
        assert sum(r.cache_read_tokens for r in results) == usage.cache_read_tokens
    finally:
        clear_model_prices(model)


@settings(max_examples=500, deadline=None)
@given(usd=st.floats(min_value=0, max_value=1e6, allow_nan=False), parts=st.integers(1, 64))
def test_split_cost_sums_exactly_in_any_order(usd: float, parts: int) -> None:
    shares = split_cost(usd, parts)
    assert len(shares) == parts
    assert sum(shares) == usd
    assert sum(sorted(shares)) == usd
    assert max(shares) - min(shares) <= math.ulp(usd) * parts  # fair to within rounding


def test_the_known_counterexample() -> None:
    # Three equal thirds of 1.26e-05 used to sum to 1.2600000000000001e-05.
    assert sum(split_cost(1.26e-05, 3)) == 1.26e-05
