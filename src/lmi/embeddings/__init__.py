"""Embedding models: one vector per text, from a provider, a local model, hashed tokens, or a mix.

Extension point: subclass :class:`EmbeddingModel` and implement ``async embed_documents(texts)``.
Nothing here imports litellm, tiktoken, numpy or torch until a model is first used.
"""

from lmi.embeddings.base import EmbeddingBatchError, EmbeddingModel, EmbeddingModes
from lmi.embeddings.factory import embedding_model_factory
from lmi.embeddings.hybrid import HybridEmbeddingModel
from lmi.embeddings.litellm import LiteLLMEmbeddingModel
from lmi.embeddings.sentence_transformer import SentenceTransformerEmbeddingModel
from lmi.embeddings.sparse import SparseEmbeddingModel

__all__ = [
    "EmbeddingBatchError",
    "EmbeddingModel",
    "EmbeddingModes",
    "HybridEmbeddingModel",
    "LiteLLMEmbeddingModel",
    "SentenceTransformerEmbeddingModel",
    "SparseEmbeddingModel",
    "embedding_model_factory",
]
