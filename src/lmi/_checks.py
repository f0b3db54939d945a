"""Checking the keys of a user's config dict: one rule for every config lmi takes.

A key lmi knows is accepted (its value is checked by the caller). A key that is a near miss of a known
one (``temprature``, ``max-tokens``, ``kwargz``) is refused with a did-you-mean, because it would be
silently ignored or sent as is. Where a config is passed through to a provider, any other key is a
provider's own parameter (``vertex_project``, ``aws_region_name``) and passes; where it is not, it is
refused too. The value checks below say what a value should have been, for messages naming both.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lmi.exceptions import ConfigurationError

# difflib's similarity ratio from which a key counts as a typo of a known one: "temprature" (0.95),
# "top-p" (0.8 before normalising), "max_retries" vs "num_retries" (0.82, a real litellm key, listed
# as known where it passes through).
NEAR_MISS_CUTOFF = 0.8
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _normalized(key: str) -> str:
    """``maxTokens``, ``max-tokens``, ``MAX TOKENS`` all read as ``max_tokens``."""
    return re.sub(r"[\s\-.]+", "_", _CAMEL.sub("_", key)).lower()


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """The known key that ``key`` is most plausibly a misspelling of, if any."""
    known = sorted(known)
    if not isinstance(key, str) or not key:
        return None
    spelled = _normalized(key)
    for candidate in known:
        if spelled == candidate or spelled.replace("_", "") == candidate.replace("_", ""):
            return candidate
    close = difflib.get_close_matches(spelled, known, n=1, cutoff=NEAR_MISS_CUTOFF)
    return close[0] if close else None


def unknown_key(key: Any, known: Iterable[str], where: str) -> ConfigurationError:
    close = did_you_mean(key, known) if isinstance(key, str) else None
    hint = f" Did you mean {close!r}?" if close else ""
    return ConfigurationError(f"Unknown key {key!r} in {where}.{hint}")


def check_keys(
    mapping: Mapping[Any, Any], known: Iterable[str], where: str, *, pass_others: bool = False
) -> None:
    """Refuse keys of ``mapping`` not in ``known``: all of them, or only near misses with ``pass_others``."""
    known = frozenset(known)
    for key in mapping:
        if key in known:
            continue
        if not pass_others or not isinstance(key, str) or did_you_mean(key, known) is not None:
            raise unknown_key(key, known, where)


# A check returns None when the value is fine, else what the value should have been.
Check = Callable[[Any], str | None]


def _not_finite(value: int | float) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def number(low: float | None = None, high: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or _not_finite(value):
            return "a number"
        if low is not None and high is not None and not low <= value <= high:
            return f"a number from {low:g} to {high:g}"
        if low is not None and value < low:
            return f"a number >= {low:g}"
        return None

    return check


def integer(low: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "a whole number" if low is None else f"a whole number >= {low}"
        return None if low is None or value >= low else f"a whole number >= {low}"

    return check


def string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "a dict"


def optional(check: Check) -> Check:
    """``check``, with ``None`` accepted too."""
    return lambda value: None if value is None else check(value)


def strings(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return "a list of strings"


__all__ = [
    "Check",
    "check_keys",
    "did_you_mean",
    "flag",
    "integer",
    "mapping",
    "number",
    "optional",
    "string",
    "strings",
    "unknown_key",
]
