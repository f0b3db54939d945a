"""What is known about an embedding model before calling it: vector size and input token limit.

The facts come from litellm's model map: ``litellm.model_cost`` when litellm is already imported (it may
hold models the user registered), otherwise the copy of the map that litellm ships as JSON, read without
importing litellm so that constructing a model stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmi._model_map import model_map as _model_map

# Native sizes of common models litellm's map lists without ``output_vector_size``.
KNOWN_NDIM = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "codestral-embed": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "voyage-3": 1024,
    "voyage-3-large": 1024,
    "voyage-3-lite": 512,
    "text-embedding-004": 768,
    "text-embedding-005": 768,
    "gemini-embedding-001": 3072,
}
# Models that reject a ``dimensions`` parameter (their size is fixed).
FIXED_SIZE_MODELS = ("text-embedding-ada-002",)


@dataclass(frozen=True, slots=True)
class EmbeddingModelInfo:
    ndim: int | None = None
    max_input_tokens: int | None = None


def _candidates(name: str) -> list[str]:
    """``azure/text-embedding-3-small`` is looked up as itself, then as ``text-embedding-3-small``."""
    names = [name]
    while "/" in name:
        name = name.split("/", 1)[1]
        names.append(name)
    return names


def embedding_model_info(name: str) -> EmbeddingModelInfo:
    """Vector size and input token limit of ``name``; each ``None`` when unknown."""
    model_map = _model_map()
    ndim: int | None = None
    max_input_tokens: int | None = None
    for candidate in _candidates(name):
        entry = model_map.get(candidate) or {}
        ndim = ndim or entry.get("output_vector_size") or KNOWN_NDIM.get(candidate)
        max_input_tokens = max_input_tokens or entry.get("max_input_tokens")
    return EmbeddingModelInfo(ndim=ndim, max_input_tokens=max_input_tokens)


def accepts_dimensions(name: str) -> bool:
    """Whether to send ``dimensions`` when the caller fixes ``ndim``; litellm maps it per provider."""
    return not any(candidate in FIXED_SIZE_MODELS for candidate in _candidates(name))
