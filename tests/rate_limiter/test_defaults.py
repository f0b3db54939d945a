"""fhlmi's limit constants: importable from lmi.rate_limiter, never applied unless passed."""

from __future__ import annotations

import subprocess
import sys
import time

import limits
import pytest

from lmi.rate_limiter import GLOBAL_RATE_LIMITER_TIMEOUT, MATCH_ALL, MATCH_MACHINE_ID, GlobalRateLimiter


def test_constants() -> None:
    from lmi.rate_limiter import (
        ANTHROPIC_DEFAULT_RPM,
        FALLBACK_RATE_LIMIT,
        GOOGLE_DEFAULT_RPM,
        OPENAI_DEFAULT_RPM,
        RATE_CONFIG,
        TOKEN_FALLBACK_RATE_LIMIT,
    )

    assert (MATCH_ALL, MATCH_MACHINE_ID) == (None, "<machine_id>")
    assert isinstance(GLOBAL_RATE_LIMITER_TIMEOUT, float)
    assert limits.RateLimitItemPerSecond(3, 1) == FALLBACK_RATE_LIMIT
    assert limits.RateLimitItemPerMinute(30_000, 1) == TOKEN_FALLBACK_RATE_LIMIT
    assert limits.RateLimitItemPerMinute(500, 1) == OPENAI_DEFAULT_RPM
    assert limits.RateLimitItemPerMinute(50, 1) == ANTHROPIC_DEFAULT_RPM
    assert limits.RateLimitItemPerMinute(15, 1) == GOOGLE_DEFAULT_RPM
    assert RATE_CONFIG[("get", "api.crossref.org")] == limits.RateLimitItemPerSecond(30, 1)
    assert RATE_CONFIG[("client|request", "gpt-4o")] == limits.RateLimitItemPerMinute(500, 1)
    assert RATE_CONFIG[("client", None)] == limits.RateLimitItemPerMinute(30_000, 1)
    assert len(RATE_CONFIG) == 10


def test_not_applied_unless_passed() -> None:
    from lmi.rate_limiter import RATE_CONFIG

    assert GlobalRateLimiter(use_in_memory=True).rate_config == {}
    assert set(GlobalRateLimiter(rate_config=RATE_CONFIG, use_in_memory=True).rate_config) == set(RATE_CONFIG)


def test_importing_the_package_does_not_import_limits() -> None:
    code = "import sys, lmi.rate_limiter; print('limits' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_match_all_limits_each_key_of_its_namespace_on_its_own() -> None:
    limiter = GlobalRateLimiter(rate_config={("client", MATCH_ALL): "2/minute"}, use_in_memory=True)
    released: list[str] = []
    for key in ("model-a", "model-a", "model-b", "model-b"):
        await limiter.try_acquire(("client", key), acquire_timeout=0.5)
        released.append(key)
    assert released == ["model-a", "model-a", "model-b", "model-b"]  # two each: separate windows
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(("client", "model-a"), acquire_timeout=0.2)
    assert time.monotonic() - started < 5  # the third in a minute is refused, within its timeout
    await limiter.try_acquire(("client|request", "model-a"), acquire_timeout=0.1)  # other namespace: free
    limiter.rate_config[("client", "model-c")] = "1/minute"  # an exact entry wins over MATCH_ALL
    await limiter.try_acquire(("client", "model-c"), acquire_timeout=0.1)
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(("client", "model-c"), acquire_timeout=0.1)


async def test_fhlmis_keyword_arguments() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    assert GlobalRateLimiter.WAIT_INCREMENT == 0.01
    with pytest.raises(ValueError, match="never fit"):
        await limiter.try_acquire(("client", "m"), "5/minute", weight=6, raise_impossible_limits=True)
    with pytest.raises(TimeoutError):  # lmi's own answer to an impossible weight, at once
        await limiter.try_acquire(("client", "m"), "5/minute", weight=6, acquire_timeout=30)
    await limiter.try_acquire(
        ("client", "m"), "5/minute", weight=5, machine_id=3, raise_impossible_limits=True
    )


async def test_web_keys_count_per_host_and_machine() -> None:
    limiter = GlobalRateLimiter(
        rate_config={
            ("get", "api.crossref.org"): "2/minute",
            (f"get|{MATCH_MACHINE_ID}", MATCH_ALL): "1/minute",
        },
        use_in_memory=True,
    )
    for _ in range(2):  # one host's limit, whatever the path or query
        await limiter.try_acquire(("get", "https://api.crossref.org/works?query=a"), acquire_timeout=0.1)
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(("get", "https://api.crossref.org/members"), acquire_timeout=0.1)
    await limiter.try_acquire(("get", "https://api.crossref.org/works"), machine_id=2, acquire_timeout=0.1)
    await limiter.try_acquire(("get", "https://example.org/a"), acquire_timeout=0.1)  # the machine-wide rule
    with pytest.raises(TimeoutError):
        await limiter.try_acquire(("get", "example.org"), acquire_timeout=0.1)
    status = await limiter.rate_limit_status()
    assert status[("get|0", "api.crossref.org")]["n_items_in_period"] == 2
    assert status[("get|2", "api.crossref.org")]["n_items_in_period"] == 1
    assert status[("get|0", "example.org")]["n_items_in_period"] == 1
