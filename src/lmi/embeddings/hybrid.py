"""`HybridEmbeddingModel`: several models side by side, their vectors concatenated."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

from pydantic import Field, model_validator

from lmi.embeddings.base import EmbeddingModel, EmbeddingModes, check_texts, gather_all_or_cancel


class HybridEmbeddingModel(EmbeddingModel):
    """Concatenates the vectors of ``models`` (typically a dense model and a sparse one), in that order.

    ``ndim`` is the sum of the models' ``ndim`` and cannot be given. The models run concurrently.
    """

    name: str = ""
    models: list[EmbeddingModel] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_ndim(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ndim") is not None:
            raise ValueError("a hybrid model's ndim is the sum of its models' ndim and cannot be given")
        return data

    def model_post_init(self, context: Any, /) -> None:
        if not self.name:
            self.name = "hybrid-" + "+".join(model.name for model in self.models)
        self._refresh_ndim()

    def _refresh_ndim(self) -> None:
        sizes = [model.ndim for model in self.models]
        self.ndim = None if None in sizes else sum(size for size in sizes if size is not None)

    def set_mode(self, mode: EmbeddingModes) -> None:
        for model in self.models:
            model.set_mode(mode)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        parts = await gather_all_or_cancel([model.embed_documents(texts) for model in self.models])
        for model, vectors in zip(self.models, parts, strict=True):
            if len(vectors) != len(texts):
                raise ValueError(f"{model.name} returned {len(vectors)} vectors for {len(texts)} texts")
        self._refresh_ndim()  # a component may have learned its size on this call
        return [list(chain.from_iterable(row)) for row in zip(*parts, strict=True)]


__all__ = ["HybridEmbeddingModel"]
