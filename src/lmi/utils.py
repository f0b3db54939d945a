"""What fhlmi code imports from ``lmi.utils``: logging setup, retry settings, async and image helpers."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_ENCODED_IMAGE = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")


def configure_llm_logs() -> None:
    """Quiet the noisy loggers around LLM calls; ``lmi`` logs at INFO when ``LITELLM_LOG`` asks for it."""
    from lmi._lazy import litellm

    module: Any = litellm()
    module.telemetry = False
    for name in ("asyncio", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("httpcore."):
            logging.getLogger(name).setLevel(logging.WARNING)
    level = logging.getLevelName(os.environ.get("LITELLM_LOG", "WARNING").upper())
    if isinstance(level, int) and level < logging.WARNING:
        logging.getLogger("lmi").setLevel(logging.INFO)
        return
    logging.getLogger("lmi").setLevel(logging.WARNING)
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_litellm_retrying_config(timeout: float = 60.0) -> dict[str, Any]:
    """litellm keyword arguments for 3 retries within ``timeout`` seconds per request."""
    return {"num_retries": 3, "timeout": timeout}


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def partial_format(value: str, **formats: Any) -> str:
    """``value.format(**formats)`` that leaves the fields it has no value for as they are."""
    return value.format_map(_KeepMissing(formats))


async def gather_with_concurrency(
    n: int | asyncio.Semaphore, coros: Iterable[Awaitable[T]], progress: bool = False
) -> list[T]:
    """``asyncio.gather`` with at most ``n`` awaitables running at once; results in the given order."""
    semaphore = n if isinstance(n, asyncio.Semaphore) else asyncio.Semaphore(n)
    awaitables = list(coros)
    bar: Any = None
    if progress:
        from lmi.embeddings._progress import progress_bar

        bar = progress_bar(len(awaitables), enabled=True, description="gather")

    async def bounded(awaitable: Awaitable[T]) -> T:
        async with semaphore:
            result = await awaitable
        if bar is not None:
            bar.update(1)
        return result

    try:
        return list(await asyncio.gather(*(bounded(a) for a in awaitables)))
    finally:
        if bar is not None:
            bar.close()


def encode_image_as_url(image_type: str, image_data: bytes | str) -> str:
    """A ``data:image/<type>;base64,...`` URL for raw image bytes (or an already base64 string)."""
    if isinstance(image_data, bytes):
        image_data = base64.b64encode(image_data).decode("ascii")
    return f"data:image/{image_type.lower().removeprefix('image/')};base64,{image_data}"


def is_encoded_image(image: str) -> bool:
    """Whether ``image`` is a base64 ``data:image/...`` URL."""
    return bool(_ENCODED_IMAGE.match(image))


def bytes_to_string(value: bytes) -> str:
    """Bytes as base64 text."""
    return base64.b64encode(value).decode("utf-8")


def string_to_bytes(value: str) -> bytes:
    """Base64 text back to bytes."""
    return base64.b64decode(value.encode("utf-8"))


def validate_image(path_or_url: str) -> None:
    """Raise ``ValueError`` unless ``path_or_url`` is a data URL, an http(s) URL or an existing file."""
    if is_encoded_image(path_or_url) or path_or_url.startswith(("http://", "https://")):
        return
    if not os.path.isfile(path_or_url):
        raise ValueError(f"Not an image data URL, an http(s) URL or a file: {path_or_url[:100]!r}")


def update_litellm_max_callbacks(value: int = 1000) -> None:
    """Raise litellm's cap on registered callbacks (30 by default), which long runs can reach."""
    from lmi._lazy import litellm

    litellm()
    from litellm.litellm_core_utils.logging_callback_manager import LoggingCallbackManager

    LoggingCallbackManager.MAX_CALLBACKS = value


__all__ = [
    "bytes_to_string",
    "configure_llm_logs",
    "encode_image_as_url",
    "gather_with_concurrency",
    "get_litellm_retrying_config",
    "is_encoded_image",
    "partial_format",
    "string_to_bytes",
    "update_litellm_max_callbacks",
    "validate_image",
]
