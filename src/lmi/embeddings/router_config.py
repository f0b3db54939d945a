"""fhlmi's router keys in a ``LiteLLMEmbeddingModel`` config, turned into what lmi sends.

fhlmi builds a ``litellm.Router`` from ``model_list`` / ``router_kwargs`` (or a pass-through router).
lmi calls litellm's functions directly, so the deployment named like the model gives the parameters
sent (its ``litellm_params``, ``model`` included), ``router_kwargs`` gives ``timeout`` and
``num_retries``, and ``pass_through_router`` changes nothing. ``kwargs`` still win over both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmi.exceptions import ConfigurationError

ROUTER_KEYS = frozenset({"model_list", "router_kwargs", "pass_through_router"})
_FROM_ROUTER_KWARGS = ("timeout", "num_retries")


def fold_router_keys(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without fhlmi's router keys, their parameters moved into ``config["kwargs"]``."""
    config = dict(config)
    config.pop("pass_through_router", None)
    router = config.pop("router_kwargs", None) or {}
    if not isinstance(router, Mapping):
        raise ConfigurationError(f"config['router_kwargs'] must be a mapping, got {type(router).__name__}")
    sent = {key: router[key] for key in _FROM_ROUTER_KWARGS if key in router}
    model_list = config.pop("model_list", None)
    if model_list is not None:
        sent.update(_deployment_params(name, model_list))
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        return config  # refused, naming it, by the config checks
    config["kwargs"] = {**sent, **kwargs}
    return config


def _deployment_params(name: str, model_list: Any) -> dict[str, Any]:
    if not isinstance(model_list, list) or not all(isinstance(entry, Mapping) for entry in model_list):
        raise ConfigurationError("config['model_list'] must be a list of {'model_name', 'litellm_params'}")
    for entry in model_list:
        if entry.get("model_name") == name:
            params = entry.get("litellm_params") or {}
            if not isinstance(params, Mapping):
                raise ConfigurationError(
                    f"config['model_list'] entry {name!r}: litellm_params must be a mapping"
                )
            return {key: value for key, value in params.items() if value is not None}
    names = [entry.get("model_name") for entry in model_list]
    raise ConfigurationError(f"config['model_list'] has no entry named {name!r} (it has {names})")
