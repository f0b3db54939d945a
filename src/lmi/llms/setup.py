"""``LiteLLMModel``'s constructor arguments (name, config, llm_config, tool_parser) → its settings.

Two steps, run by the model's validators:

1. :func:`prepare` (before validation): fhlmi's config conveniences, a nested ``config["config"]`` merged
   in, ``config["tool_parser"]`` lifted to the field, ``llm_config`` coerced, the model name resolved;
2. :func:`resolve` (after validation): the :class:`ModelSettings` calls use, the ``llm_config`` that shows
   them, and the config in fhlmi's normalised shape (a flat config gains a ``model_list``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from lmi.exceptions import ConfigurationError
from lmi.llms.config import (
    DEFAULT_MODEL,
    ModelSettings,
    has_model_identity,
    normalized_config,
    parse_settings,
)
from lmi.llms.specs import LLMConfig, check_agreement, llm_config_of, settings_with_chain

_LOGPROB_KEYS = frozenset({"logprobs", "top_logprobs"})


def prepare(data: Any) -> Any:
    """The constructor's keyword arguments with fhlmi's conveniences applied; other input untouched."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    config = data.get("config", {})  # an explicit None is refused by validation, as any non-dict is
    if isinstance(config, Mapping):
        config = dict(config)
        nested = config.pop("config", None)
        if isinstance(nested, Mapping):
            config.update(nested)
        if "tool_parser" in config:
            parser = config.pop("tool_parser")
            if data.get("tool_parser") is None:
                data["tool_parser"] = parser
        if "model_list" in config and not isinstance(config["model_list"], list):
            shown = config["model_list"]
            raise TypeError(f"config['model_list'] must be a list of deployments, got {shown!r}")
        if "model_list" not in config and _LOGPROB_KEYS & config.keys():
            _drop_unsupported_logprobs(data.get("name") or config.get("name") or DEFAULT_MODEL, config)
        data["config"] = config
    if data.get("llm_config") is not None:
        try:
            llm_config = LLMConfig.coerce(data["llm_config"])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"llm_config: {exc}") from exc
        data["llm_config"] = llm_config
        if data.get("tool_parser") is None and llm_config.tool_parser is not None:
            data["tool_parser"] = llm_config.tool_parser
    if not data.get("name") and isinstance(config, Mapping):
        name = _name_in(config)
        if name is None and data.get("llm_config") is not None:
            name = data["llm_config"].models[0].name
        if name is not None:
            data["name"] = name
    return data


def _drop_unsupported_logprobs(name: str, config: dict[str, Any]) -> None:
    """As fhlmi: a flat config asks for logprobs only of models litellm places at OpenAI; for any other
    model they are dropped with a warning (an explicit ``llm_config``/``ModelSpec`` still refuses them)."""
    from lmi._lazy import litellm

    try:
        provider = litellm().get_llm_provider(name, api_base=config.get("api_base"))[1]
    except Exception:  # a model litellm cannot place: let the provider decide
        return
    if provider != "openai":
        dropped = sorted(_LOGPROB_KEYS & config.keys())
        for key in dropped:
            del config[key]
        warnings.warn(f"{name!r} is not an OpenAI model: {dropped} dropped from its config", stacklevel=4)


def _name_in(config: Mapping[str, Any]) -> str | None:
    if config.get("name"):
        return str(config["name"])
    model_list = config.get("model_list")
    if isinstance(model_list, list) and model_list:
        first = model_list[0]
        if isinstance(first, Mapping) and isinstance(first.get("model_name"), str):
            return first["model_name"]
    return None


def resolve(
    name: str, config: Mapping[str, Any], llm_config: LLMConfig | None, tool_parser: Any
) -> tuple[ModelSettings, LLMConfig, dict[str, Any]]:
    """The settings calls use, the ``llm_config`` that describes them, and the normalised config."""
    if llm_config is None:
        settings = parse_settings(name or None, config)
        return settings, llm_config_of(settings, tool_parser), normalized_config(settings.primary, config)
    primary = llm_config.models[0].name
    if has_model_identity(config):
        from_config = parse_settings(name or None, config)
        check_agreement(from_config, llm_config)
    else:  # limits, retry options or completion parameters only: they apply to llm_config's models
        from_config = parse_settings(primary, config)
        llm_config = _with_shared_params(llm_config, from_config)
    settings = settings_with_chain(from_config, llm_config)
    return settings, llm_config, normalized_config(name or primary, config)


def _with_shared_params(llm_config: LLMConfig, from_config: ModelSettings) -> LLMConfig:
    shared = {k: v for k, v in from_config.deployments[from_config.primary].params.items() if k != "model"}
    if not shared:
        return llm_config
    for spec in llm_config.models:
        sent = spec.to_litellm_kwargs()
        clashes = sorted(k for k in shared.keys() & sent.keys() if shared[k] != sent[k])
        if clashes:
            shown = ", ".join(f"{k}: config {shared[k]!r} vs llm_config {sent[k]!r}" for k in clashes)
            raise ConfigurationError(f"config and llm_config disagree for {spec.name!r} ({shown}); give one")
    return llm_config.with_extra_params(**shared)
