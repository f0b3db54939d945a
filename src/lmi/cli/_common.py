"""What the subcommands share: the error that ends a command, credential checks, one-line messages."""

from __future__ import annotations

import difflib
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

# Sent as the API key to a server given with --api-base when the environment has none: local
# OpenAI-compatible servers (vLLM, llama.cpp, Ollama, a test replay) accept any key but want one.
PLACEHOLDER_API_KEY = "sk-no-key-needed"
# Missing variables whose names contain one of these are credentials; others (OLLAMA_API_BASE) have
# defaults in litellm and do not stop a call.
_CREDENTIAL_MARKERS = ("KEY", "TOKEN", "SECRET", "CREDENTIAL", "ACCESS")


_SOCKET_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (socket.gaierror, "unknown host"),
)


class CLIError(Exception):
    """A failure the user can fix; printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_credentials(model: str, api_base: str | None, what: str = "model") -> str | None:
    """Fail fast on a model litellm cannot place or whose provider key is missing.

    Returns the API key to send when the caller must supply one (a placeholder for a server given
    with ``api_base`` when the environment holds no key), else None. Models sent natively (OpenAI,
    Anthropic) are checked without importing litellm, which takes seconds.
    """
    native = _native_key_variable(model)
    if native is not None:
        if os.environ.get(native):
            return None
        if api_base is not None:
            return PLACEHOLDER_API_KEY
        provider = native.split("_", 1)[0].lower()
        raise CLIError(f"no API key for {model} (provider {provider}): set {native} in the environment")

    from lmi._lazy import litellm

    module: Any = litellm()
    try:
        _, provider, _, _ = module.get_llm_provider(model)
    except Exception:
        close = difflib.get_close_matches(model, list(module.model_cost), n=1, cutoff=0.8)
        if close:
            raise CLIError(
                f"unknown {what} {model!r}: did you mean {close[0]}? (or name its provider, e.g."
                f" openai/{model})"
            ) from None
        raise CLIError(
            f"unknown {what} {model!r}: litellm cannot tell its provider; name it with a provider prefix,"
            f" e.g. openai/{model} or anthropic/{model}"
        ) from None
    environment = module.validate_environment(model)
    missing = [str(key) for key in environment.get("missing_keys") or ()]
    if environment.get("keys_in_environment") or not any(_is_credential(key) for key in missing):
        return None
    if api_base is not None:
        return PLACEHOLDER_API_KEY
    if len(missing) == 1:
        raise CLIError(f"no API key for {model} (provider {provider}): set {missing[0]} in the environment")
    raise CLIError(
        f"no credentials for {model} (provider {provider}): litellm finds none of"
        f" {', '.join(missing)} in the environment; set what your provider needs"
    )


def _native_key_variable(model: str) -> str | None:
    """The key variable of a model the native transport sends (None: ask litellm)."""
    from lmi.llms.transports import wire_format

    wire = wire_format({"model": model})
    return {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}.get(wire or "")


def _is_credential(variable: str) -> bool:
    return any(marker in variable.upper() for marker in _CREDENTIAL_MARKERS)


def unreachable(exc: BaseException, api_base: str | None) -> CLIError | None:
    """The error to show when ``exc`` means the server given with ``--api-base`` could not be reached."""
    reason = connection_failure(exc) if api_base else None
    if reason is None:
        return None
    return CLIError(f"cannot connect to {api_base}: {reason} (is the server running?)", exit_code=1)


class _Stdout:
    """What the command wrote to stdout last, so that a message on stderr can start on a fresh line."""

    line_open = False


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout at once (streamed answers), remembering whether a line was left open."""
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
        _Stdout.line_open = not text.endswith("\n")


def end_open_line() -> None:
    """Before a message on stderr: end a line stdout left open, when both show in the same place."""
    if not _Stdout.line_open:
        return
    if shares_terminal(any_file=True):
        sys.stderr.write("\n")
    _Stdout.line_open = False


def shares_terminal(any_file: bool = False) -> bool:
    """Whether stdout and stderr show in the same terminal (or, with ``any_file``, the same file)."""
    try:
        same = os.path.samestat(os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno()))
    except (OSError, ValueError):
        return False
    return same and (any_file or sys.stdout.isatty())


def connection_failure(exc: BaseException) -> str | None:
    """Why a connection could not be made, when that is what ``exc`` comes down to, else None.

    Providers' clients wrap the socket error several layers deep (litellm's InternalServerError
    "Connection error." around openai's APIConnectionError around httpx's around the OSError).
    """
    for error in exception_chain(exc):
        for kind, reason in _SOCKET_FAILURES:
            if isinstance(error, kind):
                return reason
    return None


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error behind it, once each: causes, contexts and a ModelCallError's attempts."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending += [error.__cause__, error.__context__]
        pending += [attempt for _, attempt in getattr(error, "attempts", ())]


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())
