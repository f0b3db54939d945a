"""fhlmi's web-request keys: a namespace starting with ``get`` is limited per host and per machine.

``("get", "https://api.crossref.org/works?query=x")`` is counted under ``("get|<machine_id>",
"api.crossref.org")``; its limit is the first configured of ``("get", host)``,
``("get|<machine_id>", host)``, ``("get|<machine_id>", MATCH_ALL)`` and ``("get", MATCH_ALL)``, where
``<machine_id>`` is the literal :data:`~lmi.rate_limiter.defaults.MATCH_MACHINE_ID` placeholder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from lmi.rate_limiter.defaults import MATCH_ALL, MATCH_MACHINE_ID


def is_web(namespace: str) -> bool:
    return namespace.startswith("get")


def web_key(
    namespace: str, key: str, machine_id: int, config: Mapping[Any, Any]
) -> tuple[tuple[str, str], Any]:
    """The key the units are counted under, and the configured limit for it (None: not limited)."""
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    base = namespace.split("|", 1)[0]
    placeholder = f"{base}|{MATCH_MACHINE_ID}"
    limit = None
    for candidate in ((base, host), (placeholder, host), (placeholder, MATCH_ALL), (base, MATCH_ALL)):
        limit = config.get(candidate)
        if limit is not None:
            break
    return (f"{base}|{machine_id}", host), limit
