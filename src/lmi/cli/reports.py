"""``lmi cost`` (totals from the cost ledger) and ``lmi limits`` (rate-limit windows in use)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from lmi._table import render_table
from lmi.cli._common import CLIError, one_line

_RELATIVE = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
# Period lengths as the `limits` package counts them (a month is 30 days, a year 12 of those).
_UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 360 * 86400,
}
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_parsers(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    cost = subparsers.add_parser(
        "cost",
        parents=parents,
        help="what calls cost, from the cost ledger",
        description=(
            "Sum the calls recorded in the cost ledger (the SQLite file named by $LMI_COST_LEDGER, or"
            " --ledger) per model, per UTC day or per tag."
        ),
    )
    cost.add_argument(
        "--since",
        metavar="WHEN",
        help="only calls from then on: an ISO 8601 date or time (2025-01-31, 2025-01-31T12:00+02:00;"
        " naive means UTC) or a span back from now (30m, 12h, 7d, 2w)",
    )
    cost.add_argument(
        "--by", choices=("model", "day", "tag"), default="model", help="rows per (default: model)"
    )
    cost.add_argument("--ledger", metavar="PATH", help="the ledger file (default: $LMI_COST_LEDGER)")
    cost.add_argument(
        "--budget",
        metavar="KEY",
        help="instead: the budget shared through Redis under KEY (spent, reserved, left); '*' lists all",
    )
    cost.add_argument("--redis", metavar="URL", help="the Redis holding budgets (default: $REDIS_URL)")
    cost.set_defaults(run=run_cost)

    limits = subparsers.add_parser(
        "limits",
        parents=parents,
        help="current rate-limit usage",
        description=(
            "Show every rate-limit window in use: items counted in the current period against its cap."
            " Limits shared between processes live in Redis (--redis or $REDIS_URL); without Redis this"
            " only sees the in-memory limiter of this very process, which is empty."
        ),
    )
    limits.add_argument("--redis", metavar="URL", help="the Redis holding the limits (default: $REDIS_URL)")
    limits.set_defaults(run=run_limits)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An aware datetime from an ISO 8601 date/time (naive: UTC) or a span back from ``now``."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2).lower()]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CLIError(
            f"bad --since {text!r}: give an ISO 8601 date or time (2025-01-31, 2025-01-31T12:00Z)"
            " or a span back from now (30m, 12h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_cost(args: argparse.Namespace) -> int:
    if args.budget is not None:
        return run_budget(args.budget, args.redis)
    since = parse_since(args.since) if args.since is not None else None
    from lmi.cost import LEDGER_ENV, format_ledger, read_ledger

    path = args.ledger or os.environ.get(LEDGER_ENV, "").strip()
    if not path:
        raise CLIError(
            f"no cost ledger: set {LEDGER_ENV}=/path/to/costs.sqlite before running lmi (or call"
            " lmi.enable_cost_ledger(path) in Python) to record every call, or pass --ledger PATH"
        )
    try:
        rows = read_ledger(path, since=since, by=args.by)
    except FileNotFoundError:
        raise CLIError(
            f"no cost ledger at {path}: nothing has been recorded there yet", exit_code=1
        ) from None
    except Exception as exc:  # sqlite3.DatabaseError for a file that is not a ledger, among others
        raise CLIError(f"cannot read the cost ledger {path}: {one_line(str(exc))}", exit_code=1) from None
    print(format_ledger(rows, by=args.by))
    return 0


def run_budget(key: str, redis_url: str | None) -> int:
    import asyncio

    from lmi.cost.budget import NANO, check_budget_key
    from lmi.rate_limiter.parsing import normalize_redis_url, redacted, redis_url_from_env

    url = normalize_redis_url(redis_url) if redis_url else redis_url_from_env()
    if url is None:
        raise CLIError("budgets shared between processes live in Redis: pass --redis URL or set REDIS_URL")
    if key != "*":
        try:
            check_budget_key(key)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    from lmi.cost.budget_redis import redis_budget_status

    try:
        rows = asyncio.run(redis_budget_status(url, None if key == "*" else key))
    except Exception as exc:
        raise CLIError(
            f"cannot read budgets from Redis at {redacted(url)}: {one_line(str(exc))}", exit_code=1
        ) from None
    if not rows or all(limit is None for *_, limit in rows):
        print(f"No budget {key!r} in Redis at {redacted(url)}." if key != "*" else "No budgets in Redis.")
        return 0 if key == "*" else 1

    from lmi.cost import format_usd

    def usd(nano: int | None) -> str:
        return "-" if nano is None else format_usd(nano / NANO)

    table = [
        (
            name,
            usd(limit),
            usd(spent),
            usd(reserved),
            usd(None if limit is None else max(limit - spent - reserved, 0)),
        )
        for name, spent, reserved, limit in rows
    ]
    print(
        render_table(
            ("budget", "limit", "spent", "reserved", "left"), table, right=(False, True, True, True, True)
        )
    )
    return 0


def run_limits(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_show_limits(args.redis))


async def _show_limits(redis_url: str | None) -> int:
    from lmi.rate_limiter import GlobalRateLimiter, RedisUnavailableError

    limiter = GlobalRateLimiter(redis_url=redis_url) if redis_url else GlobalRateLimiter()
    try:
        status = await limiter.rate_limit_status()
    except RedisUnavailableError as exc:
        given = "--redis URL" if redis_url else "REDIS_URL"
        raise CLIError(f"{exc.problem}; start Redis there, or fix {given}", exit_code=1) from None
    finally:
        close = getattr(limiter, "aclose", None)
        if close is not None:
            await close()
    if not status:
        hint = "" if redis_url or os.environ.get("REDIS_URL") else " (in-memory limiter: pass --redis URL)"
        print(f"No rate limits in use{hint}.")
        return 0
    print(limits_table(status))
    return 0


def limits_table(status: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    header = ("namespace", "key", "used", "cap", "free", "period", "window start (UTC)")
    rows = []
    for (namespace, key), window in sorted(status.items()):
        used, cap = window.get("n_items_in_period"), window.get("period_cap")
        free = cap - used if isinstance(cap, int | float) and isinstance(used, int | float) else None
        rows.append(
            (
                str(namespace),
                str(key),
                _count(used),
                _count(cap),
                _count(free),
                _period(window.get("period_name"), window.get("period_seconds")),
                _moment(window.get("period_start")),
            )
        )
    return render_table(header, rows, right=(False, False, True, True, True, False, False))


def _count(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int | float) else "-" if value is None else str(value)


def _period(name: Any, seconds: Any) -> str:
    """``minute``, ``2 hours``; seconds when the period is not a whole number of its unit."""
    unit = _UNIT_SECONDS.get(str(name))
    if unit is None or not isinstance(seconds, int) or seconds % unit:
        return f"{_count(seconds)} s" if seconds is not None else str(name or "-")
    multiples = seconds // unit
    return str(name) if multiples == 1 else f"{multiples} {name}s"


def _moment(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)
