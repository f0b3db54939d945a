"""Constants fhlmi code imports from ``lmi.constants``; each is used where its name says, nothing more."""

from __future__ import annotations

import sys
from typing import Final

from lmi.rate_limiter.parsing import normalize_redis_url, redis_url_from_env

CHARACTERS_PER_TOKEN_ASSUMPTION: Final = 4.0  # for rough token estimates before a provider counts them
EXTRA_TOKENS_FROM_USER_ROLE: Final = 7  # chat-format overhead of one user message, for rough estimates

# Gemini (Vertex AI) safety settings sent by default with a Gemini model: only block high-risk content.
DEFAULT_VERTEX_SAFETY_SETTINGS: Final[list[dict[str, str]]] = [
    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_ONLY_HIGH"},
]

IS_PYTHON_BELOW_312: Final = sys.version_info < (3, 12)


# Read when this module is imported, as fhlmi does; the rate limiter itself reads the environment on first
# use, so setting REDIS_URL after import still works there.
REDIS_URL: str | None = redis_url_from_env()

__all__ = [
    "CHARACTERS_PER_TOKEN_ASSUMPTION",
    "DEFAULT_VERTEX_SAFETY_SETTINGS",
    "EXTRA_TOKENS_FROM_USER_ROLE",
    "IS_PYTHON_BELOW_312",
    "REDIS_URL",
    "normalize_redis_url",
]
