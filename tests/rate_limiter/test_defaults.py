"""fhlmi's limit constants: importable from lmi.rate_limiter, never applied unless passed."""

from __future__ import annotations

import subprocess
import sys

import limits

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
