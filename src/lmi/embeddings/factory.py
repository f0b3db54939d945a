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
LITELLM_PREFIX = "litellm-"


def _build(cls: type[EmbeddingModel], name: str | None, kwargs: dict[str, Any]) -> EmbeddingModel:
    """``cls`` with the kwargs that are its fields as fields, the rest in its ``config`` (as fhlmi does).

    A kwarg that is both a field and a config key (``batch_size``) stays in ``config``, where fhlmi put
    it; the model takes its field from there."""
    fields = {
        key: value
        for key, value in kwargs.items()
        if (key in cls.model_fields and key not in cls.CONFIG_CHECKS) or key == "dimensions"
    }
    config = {key: value for key, value in kwargs.items() if key not in fields}
    fields["config"] = {**config, **fields.get("config", {})}  # given, even empty, as fhlmi gives it
    if name is not None:
        fields["name"] = name
    return cls(**fields)


def _rest(name: str, prefix: str) -> str:
    rest = name.removeprefix(prefix).strip()
    if not rest:
        raise ValueError(f"Embedding model name {name!r} names no model after {prefix!r}")
    return rest


def embedding_model_factory(name: str, **kwargs: Any) -> EmbeddingModel:
    """The model ``name`` designates; ``kwargs`` that are fields of it set them, the others go to its config.

    - ``"sparse"``: :class:`SparseEmbeddingModel`;
    - ``"hybrid-<name>"``: :class:`HybridEmbeddingModel` of the model ``<name>`` designates (``kwargs`` go
      to it) and a :class:`SparseEmbeddingModel` (given ``ndim`` if passed), e.g.
      ``"hybrid-text-embedding-3-small"``;
    - ``"st-<name>"``: :class:`SentenceTransformerEmbeddingModel` of ``<name>`` (hub name or directory);
    - ``"litellm-<name>"`` or any other name: :class:`LiteLLMEmbeddingModel` of that name.

    A prefix with nothing after it raises ``ValueError``.
    """
    name = name.strip()
    if not name:
        raise ValueError("Embedding model name is empty")
    if name == "sparse":
        return _build(SparseEmbeddingModel, None, kwargs)
    if name.startswith(HYBRID_PREFIX):
        dense = embedding_model_factory(_rest(name, HYBRID_PREFIX), **kwargs)
        # fhlmi builds the sparse half from the same kwargs, and a sparse model keeps only its fields.
        sparse = SparseEmbeddingModel(**{key: kwargs[key] for key in ("ndim",) if key in kwargs})
        return HybridEmbeddingModel(name=name, models=[dense, sparse])
    if name.startswith(SENTENCE_TRANSFORMER_PREFIX):
        return _build(SentenceTransformerEmbeddingModel, _rest(name, SENTENCE_TRANSFORMER_PREFIX), kwargs)
    if name.startswith(LITELLM_PREFIX):
        return _build(LiteLLMEmbeddingModel, _rest(name, LITELLM_PREFIX), kwargs)
    return _build(LiteLLMEmbeddingModel, name, kwargs)


__all__ = ["embedding_model_factory"]
