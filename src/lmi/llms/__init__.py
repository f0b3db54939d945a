"""Chat models: the provider-free :class:`LLMModel` and LiteLLM's :class:`LiteLLMModel`."""

from lmi.llms.base import TOOL_CHOICE_AUTO, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, LLMModel
from lmi.llms.litellm_model import LiteLLMModel

__all__ = ["TOOL_CHOICE_AUTO", "TOOL_CHOICE_NONE", "TOOL_CHOICE_REQUIRED", "LLMModel", "LiteLLMModel"]
