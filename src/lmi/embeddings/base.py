"""`EmbeddingModel`, the interface every embedding model implements, and helpers the models share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmi._checks import Check, check_keys
from lmi.exceptions import ConfigurationError, EmbeddingBatchError

T = TypeVar("T")


class EmbeddingModes(StrEnum):
    """What a text is embedded as, for models that embed documents and queries differently."""

    DOCUMENT = "document"
    QUERY = "query"


class EmbeddingModel(BaseModel, ABC):
    """Turns texts into vectors: one vector of ``ndim`` floats per text, in the order given.

    ``ndim`` is ``None`` only while a model cannot know it before its first call (a sentence-transformers
    model not yet loaded, an unknown provider model); it is set once known.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    ndim: int | None = Field(default=None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict, repr=False)  # may hold API keys: keep out of logs

    # The config keys a model class reads, each with the check of its value (``Check``: None when fine,
    # else what it should be; it may also raise ConfigurationError). Any other key is refused.
    CONFIG_CHECKS: ClassVar[Mapping[str, Check]] = {}

    @field_validator("config")
    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        where = f"{cls.__name__} config"
        check_keys(config, cls.CONFIG_CHECKS, where)
        for key, value in config.items():
            try:
                expected = cls.CONFIG_CHECKS[key](value)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}[{key!r}]: {exc}") from None
            if expected is not None:
                raise ConfigurationError(f"{where}[{key!r}] must be {expected}, got {value!r}")
        return config

    @abstractmethod
    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, same order; empty strings get a vector too."""

    async def embed_document(self, text: str) -> list[float]:
        if not isinstance(text, str):
            raise TypeError(f"embed_document expects a str, got {type(text).__name__}")
        return (await self.embed_documents([text]))[0]

    def set_mode(self, mode: EmbeddingModes) -> None:
        """Embed documents or queries from now on; a no-op for models that embed both alike."""

    async def check_rate_limit(self, token_count: float, **kwargs: Any) -> None:
        """Wait until ``token_count`` tokens fit ``config["rate_limit"]`` (under ``("client", name)``)."""
        limit = self.config.get("rate_limit")
        if isinstance(limit, dict):
            limit = limit.get(self.name)
        if limit is None:
            return
        from lmi.rate_limiter import GLOBAL_LIMITER

        await GLOBAL_LIMITER.try_acquire(
            ("client", self.name), rate_limit=limit, weight=max(int(token_count), 1), **kwargs
        )

    @staticmethod
    def from_name(embedding: str, **kwargs: Any) -> EmbeddingModel:
        """``"sparse"``, ``"hybrid-<dense name>"`` or a litellm model name; ``kwargs`` are fields."""
        from lmi.embeddings.hybrid import HybridEmbeddingModel
        from lmi.embeddings.litellm import LiteLLMEmbeddingModel
        from lmi.embeddings.sparse import SparseEmbeddingModel

        if embedding.startswith("hybrid"):
            dense = LiteLLMEmbeddingModel(name="-".join(embedding.split("-")[1:]))
            return HybridEmbeddingModel(name=embedding, models=[dense, SparseEmbeddingModel(**kwargs)])
        if embedding == "sparse":
            return SparseEmbeddingModel(**kwargs)
        return LiteLLMEmbeddingModel(name=embedding, **kwargs)


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


__all__ = ["EmbeddingBatchError", "EmbeddingModel", "EmbeddingModes", "check_texts", "gather_all_or_cancel"]
