"""``lmi cache stats`` and ``lmi cache clear``: what the response cache holds and saved, and emptying it."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from lmi.cli._common import CLIError


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    cache = subparsers.add_parser(
        "cache",
        parents=parents,
        help="the response cache: what it holds and saved; clear it",
        description=(
            "The response cache named by --cache, else $LMI_CACHE, else the default SQLite file in the"
            " user cache directory."
        ),
    )
    actions = cache.add_subparsers(title="actions", metavar="ACTION", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--cache",
        metavar="CACHE",
        help="a path, sqlite:///path or redis://host:port/db (default: $LMI_CACHE)",
    )
    stats = actions.add_parser("stats", parents=[*parents, where], help="entries, size, hits and USD saved")
    stats.set_defaults(run=run_stats)
    clear = actions.add_parser("clear", parents=[*parents, where], help="remove entries")
    clear.add_argument(
        "--older-than",
        metavar="AGE",
        help="only entries stored longer ago than AGE (30d, 12h, 90m, 2w, or seconds)",
    )
    clear.set_defaults(run=run_clear)


def _store(args: argparse.Namespace) -> Any:
    from lmi.cache import CACHE_ENV, default_cache_path, open_cache

    spec = args.cache if args.cache is not None else os.environ.get(CACHE_ENV, "").strip() or True
    store = open_cache(spec)
    if store is None:
        raise CLIError(f"no response cache: {CACHE_ENV} turns it off ({spec!r}); name one with --cache")
    path = getattr(store, "path", None)
    if path is not None and not path.exists():
        return None, str(path)
    return store, store.location if spec is not True else str(default_cache_path())


def _size(amount: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if amount >= scale:
            return f"{amount / scale:,.1f} {unit}"
    return f"{amount:,} bytes"


def run_stats(args: argparse.Namespace) -> int:
    from lmi.cost.totals import format_usd

    store, location = _store(args)
    if store is None:
        print(f"response cache  {location}\nentries         0 (no file yet)")
        return 0
    stats = asyncio.run(store.stats())
    cap = f"cap {_size(stats.max_bytes)}, least recently used evicted" if stats.max_bytes else "no cap"
    ttl = f"{stats.ttl_seconds:g} s" if stats.ttl_seconds else "none"
    rows = [
        ("response cache", stats.location),
        ("entries", f"{stats.entries:,}"),
        ("size", f"{_size(stats.size_bytes)} ({cap})"),
        ("hits", f"{stats.hits:,}"),
        ("USD saved", format_usd(stats.saved_usd)),
        ("expiry", ttl),
    ]
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"{label.ljust(width)}  {value}" for label, value in rows))
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from lmi.cache import parse_duration
    from lmi.exceptions import ConfigurationError

    try:
        older_than = parse_duration(args.older_than, "--older-than") if args.older_than else None
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from None
    store, location = _store(args)
    if store is None:
        print(f"Nothing to clear: no response cache at {location}")
        return 0
    removed = asyncio.run(store.clear(older_than))
    which = f" stored more than {args.older_than} ago" if older_than else ""
    print(f"Removed {removed:,} entr{'y' if removed == 1 else 'ies'}{which} from {store.location}")
    return 0


__all__ = ["add_parser"]
