"""Bad input, generated: every input either works or raises a documented error naming what was wrong.

Documented errors are ``ValueError`` (``ConfigurationError``, pydantic's ``ValidationError``,
``JSONSchemaValidationError`` derive from it) and ``TypeError``. Inputs that once broke the rule (NaN
numbers, invalid schemas, deep nesting, infinite weights...) are pinned by their own tests at the end.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import limits
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from lmi import LiteLLMModel, LLMResult
from lmi.exceptions import ConfigurationError, JSONSchemaValidationError, RateLimitTimeout
from lmi.llms.base import output_type_request, strip_fences, validate_output
from lmi.llms.config import (
    COMPLETION_PARAMS,
    FHLMI_KEYS,
    RETRY_KEYS,
    ROUTER_KEYS,
    TOP_LEVEL_KEYS,
    parse_settings,
)
from lmi.rate_limiter import GlobalRateLimiter

# Derandomized: the same examples on every run, so CI never fails on a fresh draw; raise max_examples
# locally to search further.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
KEY = ("client", "fuzz")
T = TypeVar("T")

finite_numbers = st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | finite_numbers | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
NUMERIC_OPTIONS = ("num_retries", "retry_backoff", "max_backoff", "retry_after", "timeout")


def _outcome(function: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """The result, or the documented error (``ValueError``, ``TypeError``) raised instead; anything else
    propagates and fails the test."""
    try:
        return function(), None
    except (ValueError, TypeError) as error:
        return None, error


async def _async_outcome(function: Callable[[], Awaitable[T]]) -> tuple[T | None, Exception | None]:
    try:
        return await function(), None
    except (ValueError, TypeError) as error:
        return None, error


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value) + [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _names_something_from(message: str, config: dict[str, Any]) -> bool:
    """The message quotes a key or a value of ``config`` (a repr, or the text of a string)."""
    candidates = _leaves(config)
    return any(repr(c)[:40] in message or (isinstance(c, str) and c and c in message) for c in candidates)


# -- the config parser ---------------------------------------------------------------------------------


@FAST
@given(option=st.sampled_from(NUMERIC_OPTIONS), value=json_values, in_router=st.booleans())
def test_numeric_options_work_or_name_the_value(option: str, value: Any, in_router: bool) -> None:
    config: dict[str, Any] = {"router_kwargs": {option: value}} if in_router else {option: value}
    settings_, error = _outcome(lambda: parse_settings(None, config))
    if error is not None:
        assert isinstance(error, ConfigurationError)
        assert repr(option) in str(error)
        assert repr(value) in str(error)
        return
    assert settings_ is not None
    retry = settings_.retry
    for attempt in range(4):
        assert retry.delay(attempt) >= 0  # also not NaN: a NaN delay would sleep forever
    assert settings_.timeout is None or settings_.timeout >= 0


@FAST
@given(key=st.text(min_size=1, max_size=15), where=st.sampled_from(["router", "model_list", "entry"]))
def test_unknown_structural_keys_are_refused_by_name(key: str, where: str) -> None:
    known = {
        "router": ROUTER_KEYS,
        # beside a model_list, completion parameters and fhlmi's keys are accepted too (its normalised shape)
        "model_list": TOP_LEVEL_KEYS | RETRY_KEYS | {"timeout"} | COMPLETION_PARAMS | FHLMI_KEYS,
        "entry": frozenset({"model_name", "litellm_params", "model_info"}),
    }[where]
    if key in known:
        return
    entry: dict[str, Any] = {"model_name": "m", "litellm_params": {"model": "gpt-4o-mini"}}
    configs_by_place: dict[str, dict[str, Any]] = {
        "router": {"router_kwargs": {key: 1}},
        "model_list": {"model_list": [entry], key: 1},
        "entry": {"model_list": [{**entry, key: 1}]},
    }
    config = configs_by_place[where]
    # Raised inside pydantic validation, the ConfigurationError reaches the caller as a ValidationError.
    with pytest.raises(ValueError, match=re.escape(f"Unknown key {key!r}")):
        LiteLLMModel(config=config)


@FAST
@given(key=st.text(min_size=1, max_size=15), in_model_list=st.booleans())
def test_unknown_parameters_are_sent_or_refused_by_name(key: str, in_model_list: bool) -> None:
    """A parameter lmi does not know is a provider's own and reaches it, unless it looks like a typo."""
    if key in COMPLETION_PARAMS | RETRY_KEYS | TOP_LEVEL_KEYS:
        return
    params = {"model": "gpt-4o-mini", key: 1}
    config = {"model_list": [{"model_name": "m", "litellm_params": params}]} if in_model_list else params
    llm, error = _outcome(lambda: LiteLLMModel(config=config))
    if error is not None:
        assert re.search(re.escape(f"Unknown key {key!r}") + r".*Did you mean '\w+'\?", str(error))
        return
    assert llm is not None
    assert llm.settings.chain[0].params[key] == 1


configs = st.dictionaries(
    st.sampled_from(sorted(TOP_LEVEL_KEYS | RETRY_KEYS | {"timeout", "temperature", "api_base", "n"}))
    | st.text(max_size=8),
    json_values,
    max_size=4,
)
model_lists = st.lists(
    st.fixed_dictionaries(
        {"model_name": st.text(max_size=6) | scalars},
        optional={"litellm_params": st.dictionaries(st.sampled_from(["model", "api_base"]), json_values)},
    )
    | json_values,
    max_size=3,
)


@FAST
@given(config=configs, model_list=st.none() | model_lists, name=st.none() | st.text(min_size=1, max_size=6))
def test_any_config_builds_a_model_or_names_the_problem(
    config: dict[str, Any], model_list: list[Any] | None, name: str | None
) -> None:
    if model_list is not None:
        config = {**config, "model_list": model_list}
    if any(isinstance(v, float) and math.isnan(v) for v in _leaves(config)):
        return  # NaN: see test_nan_in_retry_options_is_refused
    model, error = _outcome(
        lambda: LiteLLMModel(config=config) if name is None else LiteLLMModel(name=name, config=config)
    )
    if error is not None:
        named = config if name is None else {**config, "__name": name}
        assert _names_something_from(str(error), named), str(error)
        return
    assert model is not None
    assert model.settings.chain[0].name == model.name
    assert isinstance(model.settings.chain[0].model, str)


@FAST
@given(config=st.none() | scalars | st.lists(scalars, max_size=2))
def test_config_that_is_not_a_dict_is_refused(config: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        LiteLLMModel(config=config)
    assert "config" in str(raised.value)


# -- the rate-limit string parser ----------------------------------------------------------------------

units = st.sampled_from(
    ["second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "month", "year", "Minute"]
) | st.sampled_from(["s", "min", "fortnight", "", "sec"])
counts = st.integers(-3, 10**12).map(str) | st.sampled_from(["0", "1.5", "1e3", "", " ", "01", "²", "١"])
separators = st.sampled_from(["/", " per ", "per", " / ", "  per  ", ";", " ", ","])
limit_strings = st.builds(
    lambda count, separator, multiples, unit: f"{count}{separator}{multiples} {unit}".strip(),
    counts,
    separators,
    st.just("") | counts,
    units,
)


@FAST
@given(text=limit_strings | st.text(max_size=20))
async def test_limit_strings_mean_what_limits_parses_or_are_refused_by_name(text: str) -> None:
    try:
        item = limits.parse(text)
        expected: tuple[int, int] | None = (int(item.amount), int(item.get_expiry()))
    except ValueError:
        expected = None
    if expected is not None and min(expected) <= 0:
        expected = None  # a limit that allows nothing is refused too
    limiter, error = _outcome(lambda: GlobalRateLimiter(rate_config={KEY: text}, use_in_memory=True))
    if error is not None:
        assert isinstance(error, ValueError)
        assert expected is None, f"{text!r} is a valid limit ({expected}) but was refused: {error}"
        assert repr(text) in str(error)
        return
    assert limiter is not None
    assert expected is not None, f"{text!r} was accepted though limits cannot parse it"
    status = (await limiter.rate_limit_status())[KEY]
    assert (status["period_cap"], status["period_seconds"]) == expected


@FAST
@given(value=st.none() | st.booleans() | finite_numbers | st.lists(st.integers(), max_size=2) | st.just({}))
def test_limits_that_are_not_strings_or_items_are_refused_by_name(value: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(value))):
        GlobalRateLimiter(rate_config={KEY: value}, use_in_memory=True)


@FAST
@given(weight=finite_numbers | st.booleans() | st.none() | st.text(max_size=3))
async def test_weights_work_or_name_the_value(weight: Any) -> None:
    cap = 10**12
    limiter = GlobalRateLimiter(rate_config={KEY: f"{cap} per 1 minute"}, use_in_memory=True)
    try:
        _, error = await _async_outcome(lambda: limiter.try_acquire(KEY, weight=weight, acquire_timeout=0))
    except RateLimitTimeout:  # documented, at once, for a weight that can never fit
        assert math.ceil(weight) > cap
        return
    if error is not None:
        assert isinstance(error, ValueError)
        assert repr(weight) in str(error)
        return
    status = (await limiter.rate_limit_status())[KEY]
    assert status["n_items_in_period"] == math.ceil(weight)


# -- output_type ---------------------------------------------------------------------------------------


class Answer(BaseModel):
    answer: str
    confidence: float


class Nested(BaseModel):
    items: list[Answer]
    note: str | None = None


SCHEMAS = [
    {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
    {"type": "string", "enum": ["yes", "no"]},
    {"title": "Weird title! with spaces & ümlauts", "type": "object", "additionalProperties": False},
    Answer.model_json_schema(),
]
texts = (
    st.text(max_size=30)
    | json_values.map(json.dumps)
    | json_values.map(lambda v: f"```json\n{json.dumps(v)}\n```")
    | st.builds(
        lambda a, c: json.dumps({"answer": a, "confidence": c}),
        st.text(max_size=5),
        finite_numbers | st.text(max_size=3),
    )
)


@FAST
@given(text=texts, output_type=st.sampled_from([Answer, Nested, *SCHEMAS]))
def test_completions_validate_or_raise_keeping_the_text(text: str, output_type: Any) -> None:
    result = LLMResult(model="fuzz", text=text)
    _, error = _outcome(lambda: validate_output(result, output_type))
    if error is not None:
        assert isinstance(error, JSONSchemaValidationError)
        assert error.text == text
        if isinstance(output_type, type):
            assert output_type.__name__ in str(error)
        return
    parsed = json.loads(strip_fences(text))  # it was JSON after all
    if isinstance(output_type, type) and issubclass(output_type, BaseModel):
        output_type.model_validate(parsed)


@FAST
@given(output_type=st.sampled_from([Answer, Nested, *SCHEMAS]) | json_values | st.sampled_from([dict, int]))
def test_output_type_requests_work_or_name_the_value(output_type: Any) -> None:
    outcome, error = _outcome(lambda: output_type_request(output_type, []))
    if error is not None:  # not a schema at all (TypeError), or a schema jsonschema cannot use (ValueError)
        assert isinstance(error, TypeError | ValueError)
        assert repr(output_type) in str(error)
        return
    assert outcome is not None
    messages, request = outcome
    response_format = request["response_format"]
    if isinstance(output_type, type):
        assert response_format == {"type": "json_object"}
        assert output_type.__name__ in str(messages[0].content)
    else:
        # sent as given, its root closed to extra properties (OpenAI's strict mode requires it)
        assert response_format["json_schema"]["schema"] == {**output_type, "additionalProperties": False}
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", response_format["json_schema"]["name"])


# -- known violations, pinned until fixed ---------------------------------------------------------------


@pytest.mark.parametrize("option", ["retry_backoff", "max_backoff", "retry_after", "timeout"])
def test_nan_in_retry_options_is_refused(option: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(option)):
        parse_settings(None, {option: float("nan")})
    with pytest.raises(ValueError, match=repr(option)):
        LiteLLMModel(config={"router_kwargs": {option: "nan"}})


def test_a_name_that_is_not_a_string_is_refused_by_parse_settings() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("['gpt-4o-mini']")):
        parse_settings(None, {"name": ["gpt-4o-mini"]})


@pytest.mark.parametrize("key", ["rate_limit", "request_limit"])
def test_a_bad_limit_in_the_config_fails_at_construction(key: str) -> None:
    with pytest.raises(ValueError, match="'banana'"):
        LiteLLMModel(config={key: "banana"})


async def test_an_infinite_weight_is_refused_by_name() -> None:
    limiter = GlobalRateLimiter(rate_config={KEY: "5/second"}, use_in_memory=True)
    with pytest.raises(ValueError, match="inf"):
        await limiter.try_acquire(KEY, weight=float("inf"))


@pytest.mark.parametrize(
    "schema", [{"type": 5}, {"type": "object", "properties": {"a": {"type": "nope"}}}, {"$ref": "#/nowhere"}]
)
def test_an_invalid_json_schema_is_refused_before_the_call(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="JSON schema"):
        output_type_request(schema, [])
    with pytest.raises(JSONSchemaValidationError):  # and never escapes validation as another type
        validate_output(LLMResult(model="m", text="{}"), schema)


def test_a_deeply_nested_completion_is_a_validation_error() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(JSONSchemaValidationError):
        validate_output(LLMResult(model="m", text=text), {"type": "array"})


def test_the_base_model_class_itself_is_refused() -> None:
    with pytest.raises(TypeError, match="BaseModel"):
        output_type_request(BaseModel, [])


@pytest.mark.parametrize("schema", [{"$schema": []}, {"$schema": None}, {"type": 5}])
def test_an_unusable_schema_is_refused_naming_it(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(schema))):
        output_type_request(schema, [])
