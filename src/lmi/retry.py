"""fhlmi's retry names: which errors are retried or fall back, and its backoff constants.

The call path (:mod:`lmi.llms.retry`) applies these rules with its own backoff; this module is where
fhlmi code imports them from.
"""

from __future__ import annotations

from typing import Any, Final

from lmi.llms.retry import should_fallback, should_retry

BACKOFF_INITIAL: Final = 1.0  # seconds: the multiplier of fhlmi's full-jitter exponential backoff
BACKOFF_CAP: Final = 30.0  # seconds: the longest wait between two attempts


def model_retrying(max_retries: int) -> Any:
    """A ``tenacity.AsyncRetrying`` with fhlmi's policy: ``should_retry`` errors, full jitter, then reraise.

    lmi's own calls do not use it (tenacity is imported here, on first use).
    """
    import tenacity

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(should_retry),
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=tenacity.wait_random_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_CAP),
        reraise=True,
    )


__all__ = ["BACKOFF_CAP", "BACKOFF_INITIAL", "model_retrying", "should_fallback", "should_retry"]
