"""The ``lmi`` command: ``lmi chat | embed | limits | cost | batch | report | cache``.

Only argparse loads at startup; each subcommand imports what it needs (litellm, numpy, the embedding
models) when it runs, so ``lmi --help`` is instant. Every failure ends as one ``lmi: error: ...`` line
on stderr and a non-zero exit (2 for input the user can fix, 1 for failures while running, 130 when
interrupted); ``--debug`` or ``LMI_DEBUG=1`` also prints the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from lmi.cli import batch, cache, chat, embed, report, reports
from lmi.cli._common import CLIError, end_open_line, exception_chain, one_line

DEBUG_ENV = "LMI_DEBUG"
EXIT_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the subcommand; SUPPRESS keeps a subcommand from resetting it.
    debug_after = argparse.ArgumentParser(add_help=False)
    debug_after.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser = argparse.ArgumentParser(
        prog="lmi",
        description="Chat with any LLM provider, embed text, and see rate limits and costs.",
        epilog="Run 'lmi COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show tracebacks of errors (or set {DEBUG_ENV}=1)"
    )
    parser.add_argument("--version", action=_Version, help="print lmi's version and exit")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    chat.add_parser(subparsers, [debug_after])
    embed.add_parser(subparsers, [debug_after])
    reports.add_parsers(subparsers, [debug_after])
    batch.add_parser(subparsers, [debug_after])
    report.add_parser(subparsers, [debug_after])
    cache.add_parser(subparsers, [debug_after])
    return parser


class _Version(argparse.Action):
    """``--version``, read from the installed distribution only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("lmi")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        print(f"lmi {number}")
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``lmi`` command; return its exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code: int = args.run(args)
            return code
        except KeyboardInterrupt:
            end_open_line()  # not at the end of a half-streamed answer
            print("lmi: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            if _reader_went_away(exc):  # lmi ... | head: stop quietly, as other commands do
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no complaint at exit
                return EXIT_FAILURE
            end_open_line()
            if debug:
                traceback.print_exc()
            print(f"lmi: error: {describe(exc)}", file=sys.stderr)
            return exit_code(exc)


def _reader_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, stdout's reader closing the pipe (also inside a model call)."""
    return any(isinstance(error, BrokenPipeError) for error in exception_chain(exc))


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, without Python's vocabulary where the message says it all."""
    from lmi.exceptions import LMIError, ModelCallError

    if isinstance(exc, ModelCallError) and exc.attempts:
        return model_failures(exc)
    message = one_line(str(exc))
    if isinstance(exc, CLIError | LMIError | OSError) and message:
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def model_failures(exc: Any) -> str:
    """Each model tried once, with its attempt count and last error, instead of every retry's error."""
    attempts: dict[str, list[BaseException]] = {}
    for model, error in exc.attempts:
        attempts.setdefault(model, []).append(error)
    parts = []
    for model, errors in attempts.items():
        count = f" ({len(errors)} attempts)" if len(errors) > 1 else ""
        message, kind = one_line(str(errors[-1])), type(errors[-1]).__name__
        parts.append(f"{model}{count}: {message if kind in message else f'{kind}: {message}'}")
    return "LLM call failed: " + "; then ".join(parts)


def exit_code(exc: BaseException) -> int:
    from lmi.exceptions import ConfigurationError

    if isinstance(exc, CLIError):
        return exc.exit_code
    if isinstance(exc, ConfigurationError):
        return EXIT_INPUT
    return EXIT_FAILURE


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, *_: Any, **__: Any
) -> None:
    print(f"lmi: warning: {one_line(str(message))}", file=sys.stderr)


__all__ = ["build_parser", "main"]
