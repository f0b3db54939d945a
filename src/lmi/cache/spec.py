"""Which cache a model uses: ``config["cache"]``, else the env ``LMI_CACHE``, resolved to a shared store.

Accepted values (in the config or, as text, in the env):

* ``True`` (env ``1``, ``true``, ``yes``, ``on``): the SQLite file :func:`default_cache_path`;
* a path, or ``sqlite:///relative.db`` / ``sqlite:////absolute.db``: that SQLite file;
* ``redis://host:port/db`` or ``rediss://...``: a Redis shared by processes and machines;
* ``False`` / ``None`` (env empty, ``0``, ``false``, ``no``, ``off``): no cache;
* a dict ``{"url": <any of the above>, "max_size": "2GB", "ttl": "30d"}``, or those two settings as URL
  query parameters (``sqlite:///x.db?max_size=500MB&ttl=7d``).

The default cap is 2 GB with least-recently-used eviction (``max_size=None`` or ``0``: no cap); by
default entries do not expire. Every model naming the same location shares one store object, so their
identical in-flight requests are made once.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from lmi.cache.store import CacheStore
from lmi.exceptions import ConfigurationError

CACHE_ENV: Final = "LMI_CACHE"
DEFAULT_MAX_BYTES: Final = 2 * 10**9
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off", "none"})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SETTINGS = frozenset({"url", "max_size", "ttl"})

_stores: dict[tuple[str, str, int | None, float | None], CacheStore] = {}
_stores_lock = threading.Lock()


def default_cache_path() -> Path:
    """``responses.sqlite`` in lmi's folder of the user cache directory (XDG on Linux)."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lmi" / "responses.sqlite"


def parse_size(value: Any, where: str = "max_size") -> int | None:
    """Bytes from ``1000``, ``"500MB"``, ``"2GiB"``; None or 0 for no cap."""
    if value is None or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigurationError(f"{where} must be a size like 500MB or 2GB, got {value!r}")
    unit = (match.group(2) or "").lower()
    scale = _SIZE_UNITS[unit[:1]] if unit else 1
    if "i" in unit:
        scale = 2 ** (10 * "bkmgt".index(unit[0]))
    size = int(float(match.group(1)) * scale)
    return size or None


def parse_duration(value: Any, where: str = "ttl") -> float | None:
    """Seconds from ``3600``, ``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``; None for never."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(f"{where} must be a positive duration like 30d, 12h or 3600, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "").lower()]


def cache_from_env() -> CacheStore | None:
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return None
    try:
        return open_cache(value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"env {CACHE_ENV}: {exc}") from None


def cache_for(config_value: Any, *, configured: bool) -> CacheStore | None:
    """The store for a model: its ``config["cache"]`` when ``configured``, else the env's."""
    if not configured:
        return cache_from_env()
    try:
        return open_cache(config_value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"config['cache']: {exc}") from None


def open_cache(spec: Any) -> CacheStore | None:
    """The (shared) store ``spec`` names, or None for no cache; ConfigurationError for anything else."""
    if isinstance(spec, CacheStore) or spec is None or spec is False:
        return spec or None
    settings: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        unknown = set(spec) - _SETTINGS
        if unknown:
            raise ConfigurationError(f"unknown key(s) {sorted(unknown)}; known: {sorted(_SETTINGS)}")
        settings = dict(spec)
        spec = settings.pop("url", True)
    if spec is True:
        return _shared("sqlite", str(default_cache_path()), settings)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"expected True, a path, sqlite:///path or redis://host, got {type(spec).__name__}: {spec!r}"
        )
    text = spec.strip()
    if text.lower() in _TRUE:
        return _shared("sqlite", str(default_cache_path()), settings)
    if text.lower() in _FALSE:
        return None
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in {"redis", "rediss", "unix"}:
        url, query = _split_query(text, settings)
        return _shared("redis", url, query)
    if scheme == "sqlite":
        url, query = _split_query(text, settings)
        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db is relative, sqlite:////abs.db absolute (SQLAlchemy's rule)
        if not path:
            raise ConfigurationError(f"{spec!r} names no file")
        return _shared("sqlite", path, query)
    if scheme:
        raise ConfigurationError(f"unknown cache scheme {scheme!r} in {spec!r}: use sqlite:// or redis://")
    return _shared("sqlite", text, settings)


def _split_query(url: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"max_size", "ttl"}
    if unknown and parts.scheme == "sqlite":
        raise ConfigurationError(f"unknown query parameter(s) {sorted(unknown)} in {url!r}")
    ours: dict[str, Any] = {k: query.pop(k) for k in ("max_size", "ttl") if k in query}
    rest = "&".join(f"{k}={v}" for k, v in query.items())  # redis-py's own options stay in the URL
    base = url.split("?", 1)[0] + (f"?{rest}" if rest else "")
    return base, {**ours, **settings}


def _shared(kind: str, location: str, settings: Mapping[str, Any]) -> CacheStore:
    max_bytes = parse_size(settings.get("max_size", DEFAULT_MAX_BYTES), "max_size")
    ttl = parse_duration(settings.get("ttl"), "ttl")
    if kind == "sqlite":
        location = str(Path(location).expanduser().absolute())
    key = (kind, location, max_bytes, ttl)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = _make(kind, location, max_bytes, ttl)
        return store


def _make(kind: str, location: str, max_bytes: int | None, ttl: float | None) -> CacheStore:
    if kind == "sqlite":
        from lmi.cache.sqlite import SQLiteStore

        return SQLiteStore(Path(location), max_bytes=max_bytes, ttl_seconds=ttl)
    from lmi.cache.redis import RedisStore

    return RedisStore(location, max_bytes=max_bytes, ttl_seconds=ttl)


__all__ = ["CACHE_ENV", "cache_for", "cache_from_env", "default_cache_path", "open_cache"]
