"""What the subcommands share: the error that ends a command, credential checks, number formatting."""

from __future__ import annotations

import math
from typing import Any

# Sent as the API key to a server given with --api-base when the environment has none: local
# OpenAI-compatible servers (vLLM, llama.cpp, Ollama, a test replay) accept any key but want one.
PLACEHOLDER_API_KEY = "sk-no-key-needed"
# Missing variables whose names contain one of these are credentials; others (OLLAMA_API_BASE) have
# defaults in litellm and do not stop a call.
_CREDENTIAL_MARKERS = ("KEY", "TOKEN", "SECRET", "CREDENTIAL", "ACCESS")


class CLIError(Exception):
    """A failure the user can fix; printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_credentials(model: str, api_base: str | None, what: str = "model") -> str | None:
    """Fail fast on a model litellm cannot place or whose provider key is missing.

    Returns the API key to send when the caller must supply one (a placeholder for a server given
    with ``api_base`` when the environment holds no key), else None.
    """
    from lmi._lazy import litellm

    module: Any = litellm()
    module.suppress_debug_info = True  # litellm prints provider lists to stdout on errors otherwise
    try:
        _, provider, _, _ = module.get_llm_provider(model)
    except Exception:
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


def _is_credential(variable: str) -> bool:
    return any(marker in variable.upper() for marker in _CREDENTIAL_MARKERS)


def usd(amount: float) -> str:
    """Dollars with at least four significant digits for small amounts: $0.000007350, $1.23."""
    if amount <= 0 or not math.isfinite(amount):
        return f"${amount:.2f}"
    decimals = 2 if amount >= 1 else 3 - math.floor(math.log10(amount))
    return f"${amount:,.{decimals}f}"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())
