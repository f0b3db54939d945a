"""Chat models: the provider-free :class:`LLMModel`, LiteLLM's :class:`LiteLLMModel`, and their helpers."""

from typing import Any

from lmi.llms.base import TOOL_CHOICE_AUTO, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, LLMModel
from lmi.llms.helpers import (
    CommonLLMNames,
    estimate_message_tokens,
    extract_top_logprobs,
    parse_cached_usage,
    pass_through_router_class,
    rate_limited,
    request_limited,
    sum_logprobs,
    validate_json_completion,
)
from lmi.llms.litellm_model import LiteLLMModel


def __getattr__(name: str) -> Any:
    if name == "PassThroughRouter":  # a litellm.Router subclass: built when first asked for
        return pass_through_router_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TOOL_CHOICE_AUTO",
    "TOOL_CHOICE_NONE",
    "TOOL_CHOICE_REQUIRED",
    "CommonLLMNames",
    "LLMModel",
    "LiteLLMModel",
    "PassThroughRouter",
    "estimate_message_tokens",
    "extract_top_logprobs",
    "parse_cached_usage",
    "rate_limited",
    "request_limited",
    "sum_logprobs",
    "validate_json_completion",
]
