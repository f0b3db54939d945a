"""``ModelSpec`` and ``LLMConfig``: fhlmi's typed model chain (public as ``lmi.config``).

An ``LLMConfig`` is the ordered list of models a call may go to (the first is the primary), each a
``ModelSpec`` with its own connection settings, retries and extra litellm parameters. ``LiteLLMModel``
accepts one as ``llm_config`` and shows the chain it will use as one. Nothing here imports litellm unless
a spec asks for logprobs (whose support litellm knows per model).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from lmi.constants import DEFAULT_VERTEX_SAFETY_SETTINGS
from lmi.exceptions import ConfigurationError
from lmi.llms.config import Deployment, ModelSettings

_NOT_SENT = frozenset({"num_retries", "max_retries", "tool_parser"})
_LOGPROB_KEYS = ("logprobs", "top_logprobs")


class ModelSpec(BaseModel):
    """One model of a chain: its litellm name, connection settings, retries and extra parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    api_base: str | None = None
    api_key: SecretStr | None = None
    timeout: float | None = Field(default=60.0, description="Seconds per request; None for litellm's.")
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt.")
    extra_params: dict[str, Any] = Field(default_factory=dict)
    responses_api: bool = False

    @model_validator(mode="after")
    def _logprobs_supported(self) -> ModelSpec:
        if any(key in self.extra_params for key in _LOGPROB_KEYS):
            from lmi._lazy import litellm

            try:
                supported = litellm().get_supported_openai_params(model=self.name) or []
            except Exception:  # a model litellm cannot place: let the provider decide
                return self
            if "logprobs" not in supported:
                raise ValueError(f"{self.name!r} does not support logprobs/top_logprobs (litellm says so)")
        return self

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelSpec:
        """A spec for ``name``: keys that are fields set them, the others become ``extra_params``."""
        fields = {key: value for key, value in overrides.items() if key in cls.model_fields}
        loose = {key: value for key, value in overrides.items() if key not in cls.model_fields}
        extra = {**loose, **(fields.pop("extra_params", None) or {})}  # explicit extra_params win
        if "gemini" in name:
            extra.setdefault("safety_settings", [dict(s) for s in DEFAULT_VERTEX_SAFETY_SETTINGS])
        return cls(name=name, extra_params=extra, **fields)

    @classmethod
    def from_legacy_params(
        cls, params: Mapping[str, Any], router_kwargs: Mapping[str, Any] | None = None
    ) -> ModelSpec:
        """A spec from a litellm ``litellm_params`` dict (``model`` is the name)."""
        router_kwargs = router_kwargs or {}
        rest = dict(params)
        name = rest.pop("model", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"litellm_params needs a 'model' name, got {params!r}")
        fields: dict[str, Any] = {"name": name}
        for key in ("api_base", "api_key", "responses_api"):
            if key in rest:
                fields[key] = rest.pop(key)
        timeout = rest.pop("timeout", router_kwargs.get("timeout", 60.0))
        fields["timeout"] = timeout
        retries = rest.pop("max_retries", rest.pop("num_retries", router_kwargs.get("num_retries", 3)))
        fields["max_retries"] = retries
        return cls(extra_params=rest, **fields)

    def to_litellm_kwargs(self) -> dict[str, Any]:
        """The keyword arguments litellm receives for this model."""
        kwargs: dict[str, Any] = {"model": self.name}
        kwargs.update((k, v) for k, v in self.extra_params.items() if k not in _NOT_SENT)
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        return kwargs


ResponseValidator = Callable[[Any], Awaitable[None] | None]


class LLMConfig(BaseModel):
    """The models a call may go to, in order (the first is the primary), and how results are checked.

    ``response_validator(result)`` runs on every result; anything it raises becomes a (retried)
    :class:`~lmi.exceptions.ResponseValidationError`.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    models: list[ModelSpec] = Field(min_length=1)
    response_validator: ResponseValidator | None = Field(default=None, exclude=True)
    tool_parser: Callable[..., Any] | None = Field(default=None, exclude=True)

    @property
    def primary(self) -> ModelSpec:
        return self.models[0]

    @classmethod
    def coerce(cls, value: Any) -> LLMConfig:
        """An ``LLMConfig`` from any shape fhlmi accepts for one.

        An instance passes; a dict with ``models`` is validated as is; one with ``model_list`` is a
        legacy router config; one with ``name`` is a single model (other keys as in
        :meth:`ModelSpec.from_name`).
        """
        if isinstance(value, LLMConfig):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"llm_config must be an LLMConfig or a dict, got {type(value).__name__}")
        if "models" in value:
            return cls.model_validate(dict(value))
        if "model_list" in value:
            return cls.from_legacy_dict(value)
        if "name" in value:
            rest = dict(value)
            name = rest.pop("name")
            lifted = {key: rest.pop(key) for key in ("tool_parser", "response_validator") if key in rest}
            return cls(models=[ModelSpec.from_name(name, **rest)], **lifted)
        raise ValueError(f"llm_config needs 'models', 'model_list' or 'name'; got keys {sorted(value)}")

    def with_extra_params(self, **params: Any) -> LLMConfig:
        """A copy with ``params`` merged into every model's ``extra_params``."""
        models = [m.model_copy(update={"extra_params": {**m.extra_params, **params}}) for m in self.models]
        return self.model_copy(update={"models": models})

    @classmethod
    def from_legacy_dict(cls, legacy: Mapping[str, Any]) -> LLMConfig:
        """From litellm's router shape: the first entry, its fallbacks, then the remaining entries."""
        entries = legacy.get("model_list") or []
        if not entries:
            raise ValueError("model_list must hold at least one model")
        router_kwargs = dict(legacy.get("router_kwargs") or {})
        by_name = {entry["model_name"]: entry for entry in entries}
        primary = entries[0]["model_name"]
        ordered = [primary]
        for group in legacy.get("fallbacks") or router_kwargs.get("fallbacks") or []:
            for source, targets in dict(group).items():
                for target in [targets] if isinstance(targets, str) else targets:
                    if target not in by_name:
                        raise ValueError(f"fallback {target!r} of {source!r} is not in model_list")
                    if source == primary and target not in ordered:
                        ordered.append(target)
        ordered += [name for name in by_name if name not in ordered]
        models = [
            ModelSpec.from_legacy_params(
                {"model": name, **(by_name[name].get("litellm_params") or {})}, router_kwargs
            )
            for name in ordered
        ]
        return cls(models=models)


_SPEC_KEYS = frozenset({"model", "api_base", "api_key", "timeout"})


def spec_of(deployment: Deployment, timeout: float | None, num_retries: int) -> ModelSpec:
    """The :class:`ModelSpec` that sends what ``deployment`` sends."""
    params = dict(deployment.params)
    return ModelSpec(
        name=deployment.model,
        api_base=params.get("api_base"),
        api_key=params.get("api_key"),
        timeout=params.get("timeout", timeout),
        max_retries=num_retries if deployment.num_retries is None else deployment.num_retries,
        extra_params={k: v for k, v in params.items() if k not in _SPEC_KEYS},
        responses_api=deployment.responses_api,
    )


def llm_config_of(settings: ModelSettings, tool_parser: Any = None) -> LLMConfig:
    """The chain ``settings`` will call, as an :class:`LLMConfig` (what ``LiteLLMModel.llm_config`` shows)."""
    models = [spec_of(d, settings.timeout, settings.retry.num_retries) for d in settings.chain]
    return LLMConfig(models=models, response_validator=settings.response_validator, tool_parser=tool_parser)


def deployment_of(spec: ModelSpec, transport: str = "auto") -> Deployment:
    """What calls send for ``spec``."""
    return Deployment(
        name=spec.name,
        params=MappingProxyType(spec.to_litellm_kwargs()),
        transport=transport,
        num_retries=spec.max_retries,
        responses_api=spec.responses_api,
    )


def settings_with_chain(base: ModelSettings, llm_config: LLMConfig) -> ModelSettings:
    """``base`` (limits, backoff) calling the chain of ``llm_config`` instead of its own models."""
    deployments: dict[str, Deployment] = {}
    transport = base.chain[0].transport  # config["transport"] applies to llm_config's models too
    for index, spec in enumerate(llm_config.models):
        key = spec.name if spec.name not in deployments else f"{spec.name}#{index}"
        deployments[key] = deployment_of(spec, transport)
    primary, *fallbacks = deployments
    return ModelSettings(
        primary=primary,
        deployments=deployments,
        fallbacks=tuple(fallbacks),
        retry=base.retry,
        timeout=base.timeout,
        rate_limit=base.rate_limit,
        request_limit=base.request_limit,
        budget=base.budget,
        max_connections=base.max_connections,
        max_concurrency=base.max_concurrency,
        response_validator=llm_config.response_validator,
    )


def _comparable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in {"model", "api_key", "timeout"} and v is not None}


def check_agreement(from_config: ModelSettings, llm_config: LLMConfig) -> None:
    """Refuse a ``config`` and an ``llm_config`` that name different models or set different values."""
    config_models = [d.model for d in from_config.chain]
    spec_models = [spec.name for spec in llm_config.models]
    problem = None
    if config_models != spec_models:
        problem = f"config calls {config_models}, llm_config calls {spec_models}"
    else:
        for deployment, spec in zip(from_config.chain, llm_config.models, strict=True):
            ours, theirs = _comparable(deployment.params), _comparable(spec.to_litellm_kwargs())
            clashes = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
            if clashes:
                shown = ", ".join(f"{k}: config {ours[k]!r} vs llm_config {theirs[k]!r}" for k in clashes)
                problem = f"for {spec.name!r} they set different values ({shown})"
                break
    if problem is not None:
        raise ConfigurationError(
            f"config and llm_config disagree: {problem}. Give the models in one of them "
            "(config may still hold rate_limit/request_limit beside an llm_config)."
        )


__all__ = ["LLMConfig", "ModelSpec"]
