"""`SentenceTransformerEmbeddingModel`: local models through sentence-transformers (``lmi[local]``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import PrivateAttr

from lmi._checks import Check, flag, integer, mapping, optional, string
from lmi.embeddings.base import EmbeddingModel, check_texts


class SentenceTransformerEmbeddingModel(EmbeddingModel):
    """A sentence-transformers model, by hub name or local directory, run in a worker thread.

    The model loads on first use (once per object), in the worker thread, so neither construction nor the
    event loop waits for torch. ``ndim`` is known after loading unless given; when given it is passed as
    ``truncate_dim``. ``config`` keys, all optional: ``device`` (``"cpu"``, ``"cuda"``…), ``model_kwargs``
    (to ``SentenceTransformer(...)``), ``encode_kwargs`` (to ``encode``, e.g. ``batch_size``,
    ``normalize_embeddings``), ``batch_size`` (texts per forward pass), ``progress``
    (sentence-transformers' own progress bar).
    Set ``HF_HUB_OFFLINE=1`` to forbid any download when ``name`` is a local directory or already cached.
    """

    CONFIG_CHECKS: ClassVar[Mapping[str, Check]] = {
        "device": string,
        "model_kwargs": mapping,
        "encode_kwargs": mapping,
        "batch_size": integer(1),
        "progress": optional(flag),
    }

    _model: Any = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def load(self) -> Any:
        """The loaded ``SentenceTransformer`` (loading it on first call); blocking."""
        with self._load_lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ImportError(
                        "SentenceTransformerEmbeddingModel needs sentence-transformers: "
                        "pip install 'lmi[local]'"
                    ) from exc
                model = SentenceTransformer(
                    self.name,
                    device=self.config.get("device"),
                    truncate_dim=self.ndim,
                    **(self.config.get("model_kwargs") or {}),
                )
                dimension = getattr(model, "get_embedding_dimension", None) or (
                    model.get_sentence_embedding_dimension
                )
                self.ndim = dimension()
                self._model = model
            return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self.load()
        options: dict[str, Any] = {"show_progress_bar": bool(self.config.get("progress", False))}
        if "batch_size" in self.config:
            options["batch_size"] = self.config["batch_size"]
        options.update(self.config.get("encode_kwargs") or {})
        vectors = model.encode(texts, convert_to_numpy=True, **options)
        return vectors.tolist()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, texts)


__all__ = ["SentenceTransformerEmbeddingModel"]
