"""``lmi limits``: the windows another process left in Redis, shown as a table."""

from __future__ import annotations

import re

from lmi.cli.reports import limits_table
from lmi.rate_limiter import GlobalRateLimiter
from tests.cli.conftest import RunLmi, assert_one_line_error
from tests.rate_limiter.conftest import free_port


async def test_shows_what_other_processes_used(run_lmi: RunLmi, redis_url: str) -> None:
    limiter = GlobalRateLimiter(redis_url=redis_url)
    try:
        await limiter.try_acquire(("client", "gpt-4o-mini"), rate_limit="1000 per minute", weight=120)
        await limiter.try_acquire(("client", "gpt-4o-mini"), rate_limit="1000 per minute", weight=30)
        await limiter.try_acquire(("client|request", "openai/gpt-4o"), rate_limit="10 per 2 hours", weight=3)
    finally:
        await limiter.aclose()

    result = run_lmi("limits", "--redis", redis_url)

    assert result.returncode == 0, result.stderr
    rows = {tuple(re.split(r"\s{2,}", line.strip())[:6]) for line in result.stdout.splitlines()[2:]}
    assert rows == {
        ("client", "gpt-4o-mini", "150", "1,000", "850", "minute"),
        ("client|request", "openai/gpt-4o", "3", "10", "7", "2 hours"),
    }


def test_redis_url_from_the_environment(run_lmi: RunLmi, redis_url: str) -> None:
    result = run_lmi("limits", env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "No rate limits in use."


def test_without_redis_nothing_is_shared(run_lmi: RunLmi) -> None:
    result = run_lmi("limits")
    assert result.returncode == 0, result.stderr
    assert "No rate limits in use" in result.stdout
    assert "--redis" in result.stdout


def test_unreachable_redis_is_one_line(run_lmi: RunLmi) -> None:
    result = run_lmi("limits", "--redis", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert_one_line_error(result, "Redis")


def test_table_periods() -> None:
    window = {"period_start": 0.0, "n_items_in_period": 0, "period_name": "day", "period_cap": 5}
    text = limits_table(
        {
            ("a", "k1"): {**window, "period_seconds": 86400},
            ("a", "k2"): {**window, "period_seconds": 3 * 86400},
            ("a", "k3"): {**window, "period_seconds": 100},
        }
    )
    periods = [re.split(r"\s{2,}", line)[5] for line in text.splitlines()[2:]]
    assert periods == ["day", "3 days", "100 s"]
    assert "1970-01-01 00:00:00" in text
