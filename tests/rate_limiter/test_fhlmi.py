"""fhlmi's ways of inspecting a limiter: its key listing and its limit lookup, through public names."""

from __future__ import annotations

import limits
import pytest

from lmi.rate_limiter import FALLBACK_RATE_LIMIT, MATCH_ALL, RATE_CONFIG, GlobalRateLimiter


async def test_limit_keys_list_every_window_with_its_limit() -> None:
    limiter = GlobalRateLimiter(rate_config={("client", "gpt-4"): "100/minute"}, use_in_memory=True)
    await limiter.try_acquire(("client", "gpt-4"), weight=10)
    await limiter.try_acquire(("get", "https://api.crossref.org/works?query=x"), rate_limit="30/second")
    await limiter.try_acquire(("client|request", "openai/gpt-4o"), rate_limit=limits.RateLimitItemPerHour(7))
    keys = await limiter.get_limit_keys()
    assert sorted((str(item), pair) for item, pair in keys) == sorted(
        [
            (str(limits.parse("100/minute")), ("client", "gpt-4")),
            (str(limits.parse("30/second")), ("get|0", "api.crossref.org")),
            (str(limits.RateLimitItemPerHour(7)), ("client|request", "openai/gpt-4o")),
        ]
    )
    assert all(isinstance(item, limits.RateLimitItem) for item, _ in keys)
    status = await limiter.rate_limit_status()
    assert {pair for _, pair in keys} == set(status)  # the same windows rate_limit_status reports
    assert await limiter.get_in_memory_limit_keys() == keys
    with pytest.raises(NotImplementedError):
        await limiter.get_rate_limit_keys()  # Redis only


def test_limit_lookup_follows_fhlmis_order() -> None:
    limiter = GlobalRateLimiter(rate_config=RATE_CONFIG, use_in_memory=True)
    crossref, namespace = limiter.parse_rate_limits_and_namespace("get|0", "api.crossref.org")
    assert (crossref, namespace) == (RATE_CONFIG[("get", "api.crossref.org")], "get")
    other_host, namespace = limiter.parse_rate_limits_and_namespace("get|0", "example.com")
    assert (other_host, namespace) == (RATE_CONFIG[("get|<machine_id>", MATCH_ALL)], "get|<machine_id>")
    assert limiter.parse_rate_limits_and_namespace("client|request", "gpt-4o") == (
        RATE_CONFIG[("client|request", "gpt-4o")],
        "client|request",
    )
    assert limiter.parse_rate_limits_and_namespace("client", "any-model") == (
        RATE_CONFIG[("client", MATCH_ALL)],
        "client",
    )
    empty = GlobalRateLimiter(use_in_memory=True)
    assert empty.parse_rate_limits_and_namespace("client", "gpt-4")[0] == FALLBACK_RATE_LIMIT
    assert "crossref.org" in GlobalRateLimiter.NO_MACHINE_ID_EXTENSIONS
