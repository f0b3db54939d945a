"""lmi: one async interface to every large language model provider.

Public names are resolved on first access so that ``import lmi`` stays instant: litellm, aviary,
tiktoken and numpy load only when a call needs them.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# litellm fetches its price map from GitHub when it is imported, unless this variable is set: offline
# that prints three warnings and sleeps between retries, whoever imports litellm (aviary does). lmi
# prices calls from the map litellm ships, so it sets the variable litellm documents for that, for
# every later importer. This replaces no code (not a monkeypatch) and keeps a value the user set.
LITELLM_OFFLINE_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"
os.environ.setdefault(LITELLM_OFFLINE_ENV, "True")

if TYPE_CHECKING:
    from lmi.constants import CHARACTERS_PER_TOKEN_ASSUMPTION, EXTRA_TOKENS_FROM_USER_ROLE
    from lmi.cost import (
        GLOBAL_COST_TRACKER,
        CostTracker,
        cost_tracking_ctx,
        enable_cost_ledger,
        enable_cost_tracking,
        set_model_prices,
    )
    from lmi.embeddings import (
        EmbeddingModel,
        EmbeddingModes,
        HybridEmbeddingModel,
        LiteLLMEmbeddingModel,
        SentenceTransformerEmbeddingModel,
        SparseEmbeddingModel,
        embedding_model_factory,
    )
    from lmi.exceptions import (
        AllModelsExhaustedError,
        BudgetExceeded,
        ConfigurationError,
        EmbeddingBatchError,
        JSONSchemaValidationError,
        LMIError,
        MalformedResponseError,
        ModelCallError,
        ModelRefusalError,
        RateLimitTimeout,
        ResponseValidationError,
    )
    from lmi.llms import (
        CommonLLMNames,
        LiteLLMModel,
        LLMModel,
        sum_logprobs,
        validate_json_completion,
    )
    from lmi.types import Embeddable, LLMResponse, LLMResult, TokenUsage
    from lmi.utils import configure_llm_logs

_EXPORTS: dict[str, str] = {
    "CHARACTERS_PER_TOKEN_ASSUMPTION": "lmi.constants",
    "EXTRA_TOKENS_FROM_USER_ROLE": "lmi.constants",
    "CommonLLMNames": "lmi.llms",
    "sum_logprobs": "lmi.llms",
    "validate_json_completion": "lmi.llms",
    "Embeddable": "lmi.types",
    "LLMResponse": "lmi.types",
    "configure_llm_logs": "lmi.utils",
    "EmbeddingModes": "lmi.embeddings",
    "AllModelsExhaustedError": "lmi.exceptions",
    "ModelRefusalError": "lmi.exceptions",
    "ResponseValidationError": "lmi.exceptions",
    "LLMModel": "lmi.llms",
    "LiteLLMModel": "lmi.llms",
    "LLMResult": "lmi.types",
    "TokenUsage": "lmi.types",
    "GLOBAL_COST_TRACKER": "lmi.cost",
    "CostTracker": "lmi.cost",
    "enable_cost_tracking": "lmi.cost",
    "cost_tracking_ctx": "lmi.cost",
    "enable_cost_ledger": "lmi.cost",
    "set_model_prices": "lmi.cost",
    "EmbeddingModel": "lmi.embeddings",
    "LiteLLMEmbeddingModel": "lmi.embeddings",
    "SparseEmbeddingModel": "lmi.embeddings",
    "HybridEmbeddingModel": "lmi.embeddings",
    "SentenceTransformerEmbeddingModel": "lmi.embeddings",
    "embedding_model_factory": "lmi.embeddings",
    "LMIError": "lmi.exceptions",
    "BatchItemError": "lmi.exceptions",
    "BudgetExceeded": "lmi.exceptions",
    "ConfigurationError": "lmi.exceptions",
    "EmbeddingBatchError": "lmi.exceptions",
    "JSONSchemaValidationError": "lmi.exceptions",
    "MalformedResponseError": "lmi.exceptions",
    "ModelCallError": "lmi.exceptions",
    "RateLimitTimeout": "lmi.exceptions",
}

__all__ = [
    "CHARACTERS_PER_TOKEN_ASSUMPTION",
    "EXTRA_TOKENS_FROM_USER_ROLE",
    "GLOBAL_COST_TRACKER",
    "AllModelsExhaustedError",
    "BatchItemError",
    "BudgetExceeded",
    "CommonLLMNames",
    "ConfigurationError",
    "CostTracker",
    "Embeddable",
    "EmbeddingBatchError",
    "EmbeddingModel",
    "EmbeddingModes",
    "HybridEmbeddingModel",
    "JSONSchemaValidationError",
    "LLMModel",
    "LLMResponse",
    "LLMResult",
    "LMIError",
    "LiteLLMEmbeddingModel",
    "LiteLLMModel",
    "MalformedResponseError",
    "ModelCallError",
    "ModelRefusalError",
    "RateLimitTimeout",
    "ResponseValidationError",
    "SentenceTransformerEmbeddingModel",
    "SparseEmbeddingModel",
    "TokenUsage",
    "configure_llm_logs",
    "cost_tracking_ctx",
    "embedding_model_factory",
    "enable_cost_ledger",
    "enable_cost_tracking",
    "set_model_prices",
    "sum_logprobs",
    "validate_json_completion",
]


# Public submodules, reachable as attributes after a bare ``import lmi`` (fhlmi imports them eagerly).
_SUBMODULES = frozenset(
    {
        "config", "constants", "cost_tracker", "embeddings", "exceptions", "llms", "rate_limiter", "retry",
        "types", "utils", "version",
    }
)  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f"lmi.{name}")  # the import binds it as an attribute
        raise AttributeError(f"module 'lmi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
