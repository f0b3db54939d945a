"""``lmi report``: spend, tokens, cache savings, latency and errors from the cost ledger; tables or a page."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmi.cli._common import CLIError, one_line
from lmi.cli.reports import parse_since

DEFAULT_SINCE = "30d"


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    report = subparsers.add_parser(
        "report",
        parents=parents,
        help="where the time and money went, from the cost ledger",
        description=(
            "Spend per day per model, tokens, prompt-cache savings, latency percentiles per model and"
            " failed attempts, read from the cost ledger (the SQLite file named by $LMI_COST_LEDGER, or"
            " --ledger). Printed as tables, or written as one self-contained HTML page with --html."
        ),
    )
    report.add_argument("--ledger", metavar="PATH", help="the ledger file (default: $LMI_COST_LEDGER)")
    report.add_argument(
        "--since",
        metavar="WHEN",
        default=DEFAULT_SINCE,
        help=f"only calls from then on (default: {DEFAULT_SINCE}): a span back from now (30m, 12h, 7d, 2w),"
        " an ISO 8601 date or time (naive means UTC), or 'all'",
    )
    report.add_argument("--html", metavar="FILE", help="write the report as an HTML page to FILE")
    report.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from lmi.cost import LEDGER_ENV
    from lmi.report import ReportError, load_report

    since = None if args.since.strip().lower() == "all" else parse_since(args.since)
    if since is not None and since > datetime.now(UTC):
        raise CLIError(
            f"--since {args.since} is in the future ({since.astimezone(UTC):%Y-%m-%d %H:%M} UTC):"
            " no call can have been recorded after it yet"
        )
    path = args.ledger or os.environ.get(LEDGER_ENV, "").strip()
    if not path:
        raise CLIError(
            f"no cost ledger: set {LEDGER_ENV}=/path/to/costs.sqlite before running lmi (or call"
            " lmi.enable_cost_ledger(path) in Python) to record every call, or pass --ledger PATH"
        )
    try:
        report = load_report(path, since=since)
    except ReportError as exc:
        raise CLIError(str(exc), exit_code=1) from None
    if args.html is None:
        from lmi.report.text import render_text

        print(render_text(report))
        return 0
    from lmi.report.html import render_html
    from lmi.report.text import period

    target = Path(args.html).expanduser()
    try:
        target.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot write {target}: {one_line(str(exc))}", exit_code=1) from None
    what = "no calls" if report.empty else f"{sum(m.calls for m in report.models):,} calls"
    print(f"Wrote {target}: {what} in {period(report)}.")
    return 0
