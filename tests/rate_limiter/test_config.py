"""Limit strings, weights, environment variables and the no-I/O-at-import promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import limits
import pytest

from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GLOBAL_LIMITER, GlobalRateLimiter
from tests.rate_limiter.conftest import free_port

KEY = ("client", "gpt-4")


@pytest.mark.parametrize("text", ["banana", "100/fortnight", "per minute", ""])
async def test_unparseable_strings_raise_value_error_naming_them(text: str) -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        await limiter.try_acquire(KEY, rate_limit=text)
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        limiter.rate_config[KEY] = text  # refused where it is given, not at the first acquisition
    assert KEY not in limiter.rate_config
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        GlobalRateLimiter(rate_config={KEY: text}, use_in_memory=True)


@pytest.mark.parametrize("text", ["100/minute", "5 per second", "1000/day", "7 per 2 seconds", "3/hour"])
async def test_strings_and_items_mean_what_limits_parses(text: str) -> None:
    item = limits.parse(text)
    for value in (text, item):
        limiter = GlobalRateLimiter(rate_config={KEY: value}, use_in_memory=True)
        await limiter.try_acquire(KEY, weight=1)
        status = (await limiter.rate_limit_status())[KEY]
        assert status["period_cap"] == item.amount
        assert status["period_seconds"] == item.get_expiry()
        assert status["period_name"] == item.GRANULARITY.name
        assert status["n_items_in_period"] == 1


async def test_rate_limit_items_from_the_readme() -> None:
    limiter = GlobalRateLimiter(use_in_memory=True)
    limiter.rate_config[("client", "a")] = limits.RateLimitItemPerSecond(30, 1)
    limiter.rate_config[("client", "b")] = limits.RateLimitItemPerMinute(1000, 1)
    await limiter.try_acquire(("client", "a"), weight=30)
    await limiter.try_acquire(("client", "b"), weight=1000)
    status = await limiter.rate_limit_status()
    assert status[("client", "a")]["period_cap"] == 30
    assert status[("client", "b")]["period_seconds"] == 60


@pytest.mark.parametrize("weight", [0, -1, -0.5, float("nan"), True, "3"])
async def test_weight_must_be_positive(weight: object) -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "10/second"}, use_in_memory=True)
    with pytest.raises(ValueError, match="weight"):
        await limiter.try_acquire(KEY, weight=weight)  # type: ignore[arg-type]


async def test_fractional_weights_round_up() -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "10/second"}, use_in_memory=True)
    await limiter.try_acquire(KEY, weight=2.2)
    assert (await limiter.rate_limit_status())[KEY]["n_items_in_period"] == 3


async def test_weight_over_the_limit_times_out_at_once() -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "10/minute"}, use_in_memory=True)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout, match="never fit") as raised:
        await limiter.try_acquire(KEY, weight=11, acquire_timeout=30)
    assert isinstance(raised.value, TimeoutError)
    assert time.monotonic() - started < 0.5


async def test_no_limit_returns_at_once_without_touching_the_store() -> None:
    # Nothing listens on this port: any round trip would fail.
    limiter = GlobalRateLimiter(redis_url=f"127.0.0.1:{free_port()}")
    before = time.time()
    granted_at = await limiter.try_acquire(("client", "unlimited"), weight=10**9)
    await limiter.adjust(("client", "unlimited"), 5)
    assert granted_at >= before


async def test_env_timeout_is_used_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "1 per 10 seconds"}, use_in_memory=True)
    await limiter.try_acquire(KEY)
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "0.3")
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        await limiter.try_acquire(KEY)
    assert 0.28 <= time.monotonic() - started < 2.0
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="RATE_LIMITER_TIMEOUT"):
        await limiter.try_acquire(KEY)


def test_env_redis_url_selects_redis_with_or_without_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert GlobalRateLimiter().storage == "memory"
    for url, expected in [
        ("localhost:6379", "redis://localhost:6379"),
        ("redis://cache:6380/2", "redis://cache:6380/2"),
        ("rediss://user:pw@cache:6380", "rediss://user:pw@cache:6380"),
    ]:
        monkeypatch.setenv("REDIS_URL", url)
        limiter = GlobalRateLimiter()
        assert limiter.storage == "redis"
        assert limiter.redis_url == expected
        assert GlobalRateLimiter(use_in_memory=True).storage == "memory"
    assert GlobalRateLimiter(redis_url="other:1").redis_url == "redis://other:1"


def test_import_and_global_limiter_do_no_io() -> None:
    assert isinstance(GLOBAL_LIMITER, GlobalRateLimiter)
    code = (
        "import sys, lmi.rate_limiter as r\n"
        "assert 'redis' not in sys.modules and 'limits' not in sys.modules, sorted(sys.modules)\n"
        "assert r.GLOBAL_LIMITER.storage == 'redis'\n"
        "assert 'redis' not in sys.modules\n"
    )
    env = {**os.environ, "REDIS_URL": f"127.0.0.1:{free_port()}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
