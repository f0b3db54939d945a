"""Completion parameters: the ones lmi knows, the type each must have, and the one check they all pass.

Every config shape goes through :func:`check_params`: the flat shape's top level and each
``model_list[i]["litellm_params"]``. Known parameters are type-checked; a near miss of one is refused
with a did-you-mean; anything else is a provider's own parameter and reaches litellm as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmi._checks import (
    Check,
    did_you_mean,
    flag,
    integer,
    mapping,
    number,
    string,
    strings,
    unknown_key,
)
from lmi.exceptions import ConfigurationError


def _stop(value: Any) -> str | None:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    return "a string or a list of strings"


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else "a list"


def _response_format(value: Any) -> str | None:
    return None if isinstance(value, Mapping | type) else "a dict"


def _tool_choice(value: Any) -> str | None:
    return None if isinstance(value, str | Mapping) else "'auto', 'none', 'required' or a dict"


# Known parameters and their types; ``None`` is accepted for each (it means "not set").
PARAM_CHECKS: dict[str, Check] = {
    "model": string,
    "temperature": number(0),
    "top_p": number(0, 1),
    "frequency_penalty": number(),
    "presence_penalty": number(),
    "max_tokens": integer(1),
    "max_completion_tokens": integer(1),
    "n": integer(1),
    "seed": integer(),
    "top_k": integer(1),
    "top_logprobs": integer(0),
    "timeout": number(0),
    "stream_timeout": number(0),
    "logprobs": flag,
    "parallel_tool_calls": flag,
    "drop_params": flag,
    "stream": flag,
    "store": flag,
    "stop": _stop,
    "modalities": strings,
    "tools": _list,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    **dict.fromkeys(
        (
            "api_base", "api_key", "api_version", "base_url", "custom_llm_provider", "deployment_id",
            "organization", "user", "reasoning_effort", "service_tier", "verbosity", "prompt_cache_key",
            "safety_identifier",
        ),
        string,
    ),
    **dict.fromkeys(
        (
            "audio", "extra_body", "extra_headers", "headers", "logit_bias", "metadata", "prediction",
            "stream_options", "thinking", "web_search_options",
        ),
        mapping,
    ),
}  # fmt: skip
# litellm parameters close enough to a known one to look like its typo (max_retries ~ num_retries),
# plus common provider ones: accepted as they are, unchecked.
PASS_THROUGH = frozenset(
    {
        "max_retries", "num_retries", "mock_response", "functions", "function_call", "safety_settings",
        "vertex_project", "vertex_location", "vertex_credentials", "region_name", "aws_region_name",
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_profile_name",
        "input_cost_per_token", "output_cost_per_token", "rpm", "tpm", "tags", "model_info",
        "litellm_credential_name", "merge_reasoning_content_in_choices", "use_in_pass_through",
    }
)  # fmt: skip
KNOWN_PARAMS = frozenset(PARAM_CHECKS)


def check_param(key: str, value: Any, where: str) -> None:
    """Raise if ``value`` is not of the type the known parameter ``key`` takes."""
    check = PARAM_CHECKS.get(key)
    if check is None or value is None:
        return
    expected = check(value)
    if expected is not None:
        raise ConfigurationError(f"{where}[{key!r}] must be {expected}, got {value!r}")


def check_params(params: Mapping[str, Any], where: str, also_known: frozenset[str] = frozenset()) -> None:
    """The one check of completion parameters, whatever the config shape they come from.

    ``also_known`` names other keys valid at the same level (a flat config's ``name``, ``rate_limit``…):
    a near miss of those is refused too.
    """
    known = KNOWN_PARAMS | also_known
    for key, value in params.items():
        if key in PARAM_CHECKS:
            check_param(key, value, where)
        elif key in also_known or key in PASS_THROUGH:
            continue
        elif not isinstance(key, str) or did_you_mean(key, known) is not None:
            raise unknown_key(key, known, where)


__all__ = ["KNOWN_PARAMS", "PARAM_CHECKS", "PASS_THROUGH", "check_param", "check_params"]
