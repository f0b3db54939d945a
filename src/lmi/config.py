"""fhlmi's ``lmi.config``: the typed model chain :class:`ModelSpec` / :class:`LLMConfig`."""

from lmi.llms.specs import LLMConfig, ModelSpec

__all__ = ["LLMConfig", "ModelSpec"]
