"""`EmbeddingModel`, the interface every embedding model implements, and helpers the models share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from lmi.exceptions import EmbeddingBatchError

T = TypeVar("T")


class EmbeddingModel(BaseModel, ABC):
    """Turns texts into vectors: one vector of ``ndim`` floats per text, in the order given.

    ``ndim`` is ``None`` only while a model cannot know it before its first call (a sentence-transformers
    model not yet loaded, an unknown provider model); it is set once known.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    ndim: int | None = Field(default=None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict, repr=False)  # may hold API keys: keep out of logs

    @abstractmethod
    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, same order; empty strings get a vector too."""

    async def embed_document(self, text: str) -> list[float]:
        if not isinstance(text, str):
            raise TypeError(f"embed_document expects a str, got {type(text).__name__}")
        return (await self.embed_documents([text]))[0]


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, or a TypeError naming the first item that is not a string."""
    if isinstance(texts, str | bytes):
        raise TypeError(
            f"embed_documents expects a list of strings, got a single {type(texts).__name__}; "
            "use embed_document for one text"
        )
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, not str: every text must be a string")
    return texts


async def gather_all_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Results of all awaitables in order; on the first failure the rest are cancelled and it is raised."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["EmbeddingBatchError", "EmbeddingModel", "check_texts", "gather_all_or_cancel"]
