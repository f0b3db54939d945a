"""`embedding_model_factory`: an embedding model from one name, as configuration files spell it."""

from __future__ import annotations

from typing import Any

from lmi.embeddings.base import EmbeddingModel
from lmi.embeddings.hybrid import HybridEmbeddingModel
from lmi.embeddings.litellm import LiteLLMEmbeddingModel
from lmi.embeddings.sentence_transformer import SentenceTransformerEmbeddingModel
from lmi.embeddings.sparse import SparseEmbeddingModel

HYBRID_PREFIX = "hybrid-"
SENTENCE_TRANSFORMER_PREFIX = "st-"


def embedding_model_factory(name: str, **kwargs: Any) -> EmbeddingModel:
    """The model ``name`` designates; ``kwargs`` go to its constructor.

    - ``"sparse"``: :class:`SparseEmbeddingModel`;
    - ``"hybrid-<dense name>"``: :class:`HybridEmbeddingModel` of the dense model (``kwargs`` go to it) and a
      default :class:`SparseEmbeddingModel`, e.g. ``"hybrid-text-embedding-3-small"``;
    - ``"st-<name>"``: :class:`SentenceTransformerEmbeddingModel` of ``<name>`` (hub name or directory);
    - anything else: :class:`LiteLLMEmbeddingModel` of that name.
    """
    if name == "sparse":
        return SparseEmbeddingModel(**kwargs)
    if name.startswith(HYBRID_PREFIX):
        dense = embedding_model_factory(name.removeprefix(HYBRID_PREFIX), **kwargs)
        return HybridEmbeddingModel(name=name, models=[dense, SparseEmbeddingModel()])
    if name.startswith(SENTENCE_TRANSFORMER_PREFIX):
        return SentenceTransformerEmbeddingModel(
            name=name.removeprefix(SENTENCE_TRANSFORMER_PREFIX), **kwargs
        )
    return LiteLLMEmbeddingModel(name=name, **kwargs)


__all__ = ["embedding_model_factory"]
