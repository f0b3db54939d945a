"""``LLMModel``: the provider-free half of every chat model.

``call`` normalises the messages, turns ``output_type`` and ``tools`` into request parameters, hands the
request to the subclass's ``acompletion`` (or ``acompletion_iter`` when callbacks stream it), and validates
what comes back. Subclasses only talk to their provider.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import warnings
from abc import ABC
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lmi import telemetry
from lmi._lazy import aviary_core
from lmi.cache.chat import chat_cache
from lmi.cache.keys import UncacheableRequest
from lmi.exceptions import JSONSchemaValidationError, StreamingUnsupportedError
from lmi.llms.config import requested_n
from lmi.types import Deferred, LLMResult

if TYPE_CHECKING:
    from aviary.core import Message, Tool

    from lmi.cache.chat import ChatCache
    from lmi.cache.store import CacheStore

TOOL_CHOICE_AUTO: Final = "auto"
TOOL_CHOICE_NONE: Final = "none"
TOOL_CHOICE_REQUIRED: Final = "required"
_CACHE_MODES: Final = (None, True, False, "refresh")

TextCallback: TypeAlias = Callable[[str], Any] | Callable[[str], Awaitable[Any]]
OutputType: TypeAlias = type[BaseModel] | TypeAdapter[Any] | Mapping[str, Any]
ResultCallback: TypeAlias = Callable[[LLMResult], Any]

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


_PLAIN_ROLES = frozenset({"user", "system", "assistant"})


def _is_plain(message: Mapping[str, Any]) -> bool:
    """A dict that is exactly a role and a text: sent as it is, an aviary Message only when read."""
    return (
        type(message) is dict
        and message.keys() <= {"role", "content"}
        and message.get("role", "user") in _PLAIN_ROLES
        and type(message.get("content")) is str
    )


def normalize_messages(messages: str | Iterable[Any], plain: bool = False) -> list[Message]:
    """A plain string is one user message; dicts become aviary Messages; nothing empty is sent.

    With ``plain``, a string and dicts holding only a role and a text stay plain dicts
    (``{"role", "content"}``): they are what the provider receives, and aviary (which imports litellm)
    is not needed to send them. ``LLMResult.prompt`` turns them into aviary Messages when it is read.
    """
    if isinstance(messages, str):
        if not messages:
            raise ValueError("Cannot call an LLM with an empty prompt.")
        if plain:
            return [{"role": "user", "content": messages}]  # type: ignore[list-item]
        return [aviary_core().Message(content=messages)]
    if plain and isinstance(messages, list) and all(_is_plain(m) for m in messages):
        if not messages:
            raise ValueError("Cannot call an LLM with an empty list of messages.")
        return [{"role": "user", **m} for m in messages]  # type: ignore[misc]
    Message = aviary_core().Message
    if isinstance(messages, Message):
        return [messages]
    normalized = []
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            normalized.append(message)
        elif isinstance(message, Mapping):
            normalized.append(Message(**message))
        else:
            raise TypeError(
                f"messages[{index}] must be an aviary Message or a dict, got {type(message).__name__}"
            )
    if not normalized:
        raise ValueError("Cannot call an LLM with an empty list of messages.")
    return normalized


def strip_fences(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text


def check_json_schema(schema: Mapping[str, Any]) -> None:
    """Refuse a schema jsonschema cannot use before any provider is paid for an answer to it."""
    import jsonschema
    from referencing.exceptions import Unresolvable

    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        validator(schema).is_valid(None)  # resolves the references met at the root
    except (jsonschema.SchemaError, Unresolvable, TypeError) as exc:  # TypeError: e.g. a list as $schema
        raise ValueError(f"output_type is not a usable JSON schema ({exc}): {dict(schema)!r}") from exc


def output_type_request(
    output_type: OutputType, messages: list[Message]
) -> tuple[list[Message], dict[str, Any]]:
    """The messages and request parameters that ask for ``output_type``.

    A pydantic model uses JSON mode with its schema given to the model in a system message; a JSON-schema
    dict uses the provider's strict structured output.
    """
    if isinstance(output_type, TypeAdapter) or (
        isinstance(output_type, type) and issubclass(output_type, BaseModel)
    ):
        if output_type is BaseModel:
            raise TypeError("output_type must be a subclass of pydantic's BaseModel, not BaseModel itself")
        schema = (
            output_type.json_schema()
            if isinstance(output_type, TypeAdapter)
            else output_type.model_json_schema()
        )
        content = f"Respond following this JSON schema:\n\n{json.dumps(schema)}"
        request = {"response_format": {"type": "json_object"}}
        for index, item in enumerate(messages):  # joined to the first system message, if any
            message: Any = item
            plain = type(message) is dict
            role = message.get("role") if plain else message.role
            text = message.get("content") if plain else message.content
            if role == "system" and isinstance(text, str):
                joined: Any = (
                    {**message, "content": f"{text}\n{content}"}
                    if plain
                    else message.model_copy(update={"content": f"{text}\n{content}"})
                )
                return [*messages[:index], joined, *messages[index + 1 :]], request
        if messages and type(messages[0]) is dict:  # plain messages stay plain
            instruction: Any = {"role": "system", "content": content}
        else:
            instruction = aviary_core().Message(role="system", content=content)
        return [instruction, *messages], request
    if isinstance(output_type, Mapping):
        check_json_schema(output_type)
        name = str(output_type.get("title") or "response")
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]
        response_format = {
            "type": "json_schema",
            # OpenAI's strict mode refuses a schema whose root allows extra properties (as fhlmi sends it)
            "json_schema": {
                "strict": True,
                "schema": {**output_type, "additionalProperties": False},
                "name": name,
            },
        }
        return messages, {"response_format": response_format}
    raise TypeError(
        "output_type must be a pydantic model class, a TypeAdapter or a JSON-schema dict, "
        f"got {output_type!r}"
    )


def validate_output(result: LLMResult, output_type: OutputType) -> None:
    """Raise :class:`JSONSchemaValidationError` (carrying the raw text) unless the text matches."""
    messages = result.__dict__.get("messages")  # not result.messages: that would build aviary messages
    if type(messages) is not Deferred and messages and getattr(messages[0], "tool_calls", None):
        return  # a tool call is the answer; there is no text to validate
    text = strip_fences(result.text or "")
    if isinstance(output_type, TypeAdapter) or (
        isinstance(output_type, type) and issubclass(output_type, BaseModel)
    ):
        try:
            if isinstance(output_type, TypeAdapter):
                output_type.validate_json(text)
            else:
                output_type.model_validate_json(text)
        except ValueError as exc:
            shown = getattr(output_type, "__name__", None) or repr(output_type)
            raise JSONSchemaValidationError(
                f"Completion does not match {shown}: {exc}", text=result.text or ""
            ) from exc
        return
    import jsonschema
    from referencing.exceptions import Unresolvable

    try:
        jsonschema.validate(json.loads(text), dict(output_type))
    except (
        ValueError,
        RecursionError,  # a completion nested deeper than json can parse
        jsonschema.ValidationError,
        jsonschema.SchemaError,
        Unresolvable,
    ) as exc:
        if isinstance(exc, jsonschema.ValidationError | jsonschema.SchemaError):
            message = f"at {exc.json_path}: {exc.message}"
        else:
            message = str(exc)
        raise JSONSchemaValidationError(
            f"Completion does not match the JSON schema: {message}", text=result.text or ""
        ) from exc


def tools_request(tools: list[Tool], tool_choice: Any) -> dict[str, Any]:
    Tool = aviary_core().Tool

    if tool_choice is not None and not isinstance(tool_choice, Tool | str):
        raise TypeError(f"tool_choice must be 'auto', 'none', 'required' or a Tool, got {tool_choice!r}")
    if isinstance(tool_choice, str) and tool_choice not in {
        TOOL_CHOICE_AUTO,
        TOOL_CHOICE_NONE,
        TOOL_CHOICE_REQUIRED,
    }:
        raise ValueError(f"tool_choice must be 'auto', 'none', 'required' or a Tool, got {tool_choice!r}")
    request: dict[str, Any] = {"tools": [tool.model_dump(exclude_none=True, by_alias=True) for tool in tools]}
    if isinstance(tool_choice, Tool):
        request["tool_choice"] = {"type": "function", "function": {"name": tool_choice.info.name}}
    elif tool_choice is not None:
        request["tool_choice"] = tool_choice
    return request


class LLMModel(ABC, BaseModel):
    """A chat model. Subclasses implement ``acompletion`` and ``acompletion_iter``; callers use ``call``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    # Whether acompletion takes plain {"role", "content"} dicts besides aviary Messages (see
    # normalize_messages); subclasses written against the documented API receive aviary Messages.
    _takes_plain_messages: ClassVar[bool] = False

    NO_TOOL_CHOICE: ClassVar[str] = TOOL_CHOICE_NONE
    MODEL_CHOOSES_TOOL: ClassVar[str] = TOOL_CHOICE_AUTO
    TOOL_CHOICE_REQUIRED: ClassVar[str] = TOOL_CHOICE_REQUIRED
    UNSPECIFIED_TOOL_CHOICE: ClassVar[None] = None

    llm_type: str | None = None  # kept for fhlmi configs; unused
    name: str  # required, as in fhlmi: a result names the model that gave it
    llm_result_callback: ResultCallback | None = Field(
        default=None, exclude=True, description="Called (and awaited, if async) with every result."
    )
    config: dict[str, Any] = Field(default_factory=dict)

    def __new__(cls, *args: Any, **kwargs: Any) -> LLMModel:
        # Abstract (the README's word) yet with no abstract methods (as in fhlmi): LLMModel itself cannot
        # be built, while a subclass that lacks a method is refused only when that method is used.
        if cls is LLMModel:
            raise TypeError("LLMModel is abstract: subclass it (e.g. LiteLLMModel) to use it")
        return super().__new__(cls)

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.name}"

    # Not abstract (as in fhlmi): a subclass that only answers one way can still be built.
    async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
        """One request to the provider; a result per completion choice."""
        raise NotImplementedError(f"{type(self).__name__} does not implement acompletion")

    def acompletion_iter(
        self, messages: list[Message], callbacks: list[TextCallback] | None = None, **kwargs: Any
    ) -> AsyncIterator[LLMResult]:
        """One streamed request: call each callback with every text delta, then yield the final result."""
        raise NotImplementedError(f"{type(self).__name__} does not implement acompletion_iter (streaming)")

    def count_tokens(self, text: str) -> int:
        """A rough token count (4 characters a token); subclasses that know their tokenizer override it."""
        return len(text) // 4

    def default_n(self) -> int:
        """Completions per call when the call does not say (``config["n"]``, else 1)."""
        return int(self.config.get("n", 1))

    async def call(
        self,
        messages: str | Iterable[Message | Mapping[str, Any]],
        callbacks: Iterable[TextCallback] | None = None,
        name: str | None = None,
        output_type: OutputType | None = None,
        tools: list[Tool] | None = None,
        tool_choice: Tool | str | None = TOOL_CHOICE_REQUIRED,
        **kwargs: Any,
    ) -> list[LLMResult]:
        """Complete ``messages``; return one :class:`LLMResult` per completion (``n`` of them).

        ``callbacks`` (sync or async, each receiving every text delta, and ``name=`` if it takes one) make
        the call stream. ``name`` labels the results (it is not sent). ``output_type`` asks for, and
        validates, JSON output; ``tools`` let the model answer with an aviary ``ToolRequestMessage``
        (``tool_choice`` defaults to requiring a tool call). ``cache=False`` bypasses the model's response
        cache for this call, ``cache="refresh"`` asks the provider and overwrites the stored answer.
        """
        if name is not None and not isinstance(name, str):
            # Positional arguments in the order (callbacks, output_type, tools, tool_choice) of lmi 0.1.
            name, output_type, tools, tool_choice = (
                None,
                name,
                output_type,
                (tool_choice if tools is None else tools),
            )
        kwargs.pop("config", None)
        n = kwargs["n"] if "n" in kwargs else self.default_n()
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        streaming = callbacks is not None
        if streaming and n > 1:
            raise StreamingUnsupportedError(
                f"Streaming callbacks receive one completion, but n={n}; use n=1 with callbacks."
            )
        instruments = telemetry.active()
        if instruments is None:  # no OpenTelemetry provider configured, the common case
            return await self._call(messages, callbacks, name, output_type, tools, tool_choice, kwargs)
        provider, params = self._telemetry_target()
        return await telemetry.traced_chat(
            instruments,
            self.name,
            provider,
            {**params, **kwargs},
            partial(self._call, messages, callbacks, name, output_type, tools, tool_choice, kwargs),
        )

    def _telemetry_target(self) -> tuple[str, Mapping[str, Any]]:
        """``gen_ai.provider.name`` and the default request parameters, for the call's span."""
        return telemetry.provider_name(self.name), self.config

    async def _call(
        self,
        messages: str | Iterable[Message | Mapping[str, Any]],
        callbacks: Iterable[TextCallback] | None,
        name: str | None,
        output_type: OutputType | None,
        tools: list[Tool] | None,
        tool_choice: Tool | str | None,
        kwargs: dict[str, Any],
    ) -> list[LLMResult]:
        cache_mode = kwargs.pop("cache", None)
        prompt = normalize_messages(messages, plain=self._takes_plain_messages)
        if output_type is not None:
            prompt, request = output_type_request(output_type, prompt)
            kwargs = {**request, **kwargs}
        if tools:
            kwargs = {**tools_request(tools, tool_choice), **kwargs}
        cbs = None if callbacks is None else [_with_name(callback, name) for callback in callbacks]
        if cbs is not None:
            self.refuse_n_with_callbacks(kwargs)
        complete = partial(self._complete, prompt, cbs, output_type, kwargs)
        cache = self._chat_cache(cache_mode)
        key = None if cache is None else self._cache_key_or_none(prompt, kwargs)
        if cache is None or key is None:
            results = await complete()
        else:
            notify = TextNotifier(cbs) if cbs else None
            refresh = cache_mode == "refresh"
            results = await cache.call(key, complete, prompt=prompt, refresh=refresh, notify=notify)
        if tools is not None and getattr(self, "tool_parser", None) is None:
            _as_tool_requests(results)
        for result in results:
            if name is not None:
                result.name = name
            if self.llm_result_callback is not None:
                outcome = self.llm_result_callback(result)
                if inspect.isawaitable(outcome):
                    await outcome
        return results

    async def _complete(
        self,
        prompt: list[Message],
        callbacks: list[TextCallback] | None,
        output_type: OutputType | None,
        kwargs: dict[str, Any],
    ) -> list[LLMResult]:
        """Ask the provider (streaming when there are callbacks, even none); validate ``output_type``."""
        if callbacks is not None:
            results = [
                result async for result in self.acompletion_iter(prompt, callbacks=callbacks, **kwargs)
            ]
        else:
            results = await self.acompletion(prompt, **kwargs)
        if output_type is not None:
            for result in results:
                validate_output(result, output_type)
        return results

    # -- the response cache (lmi.cache): subclasses that can name their requests opt in -----------------

    def response_cache(self) -> CacheStore | None:
        """The cache store this model answers from, if any (see ``LiteLLMModel``'s ``config["cache"]``)."""
        return None

    def cache_key(self, prompt: list[Message], kwargs: dict[str, Any]) -> str:
        """The exact key (:mod:`lmi.cache.keys`) of asking ``prompt`` with request parameters ``kwargs``."""
        raise NotImplementedError(f"{type(self).__name__} does not name its requests for a cache")

    def _chat_cache(self, mode: Any) -> ChatCache | None:
        if mode not in _CACHE_MODES:
            raise ValueError(f"cache must be True, False or 'refresh', got {mode!r}")
        store = self.response_cache() if mode is not False else None
        return None if store is None else chat_cache(store)

    def _cache_key_or_none(self, prompt: list[Message], kwargs: dict[str, Any]) -> str | None:
        try:
            return self.cache_key(prompt, kwargs)
        except UncacheableRequest as exc:
            warnings.warn(f"{self.name}: this call is not cached: {exc}", stacklevel=4)
            return None

    def completions_requested(self, kwargs: Mapping[str, Any]) -> int:
        """How many completions a call with ``kwargs`` asks for: its ``n``, else the config's."""
        return requested_n(kwargs.get("n", self.config.get("n")))

    def refuse_n_with_callbacks(self, kwargs: Mapping[str, Any]) -> None:
        """Raise, before anything is sent, when streaming callbacks would meet more than one completion."""
        n = self.completions_requested(kwargs)
        if n != 1:
            raise StreamingUnsupportedError(
                f"Streaming callbacks receive one completion, but n={n} would be requested "
                "(from the call or the config); pass n=1 with callbacks."
            )

    async def call_single(
        self,
        messages: str | Iterable[Message | Mapping[str, Any]],
        callbacks: Iterable[TextCallback] | None = None,
        name: str | None = None,
        output_type: OutputType | None = None,
        tools: list[Tool] | None = None,
        tool_choice: Tool | str | None = TOOL_CHOICE_REQUIRED,
        **kwargs: Any,
    ) -> LLMResult:
        """Like :meth:`call` with ``n=1``: one result (the first, with a warning, if several came back)."""
        kwargs["n"] = 1
        results = await self.call(messages, callbacks, name, output_type, tools, tool_choice, **kwargs)
        if not results:
            raise ValueError(f"{self.name} returned no completion")
        if len(results) > 1:
            warnings.warn(
                f"call_single expected one completion from {self.name}, got {len(results)}; "
                "returning the first",
                stacklevel=2,
            )
        return results[0]


def _with_name(callback: TextCallback, name: str | None) -> TextCallback:
    """``callback`` given ``name=`` too when its signature has a ``name`` parameter (as fhlmi calls it)."""
    try:
        parameters = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return callback
    if "name" not in parameters:
        return callback
    if asyncio.iscoroutinefunction(callback) or asyncio.iscoroutinefunction(type(callback).__call__):

        async def named_async(delta: str) -> Any:
            return await callback(delta, name=name)  # type: ignore[call-arg]

        return named_async
    return lambda delta: callback(delta, name=name)  # type: ignore[call-arg]


def _as_tool_requests(results: list[LLMResult]) -> None:
    """With ``tools`` given (even none), each answer is a ``ToolRequestMessage``, tool calls or not."""
    aviary = aviary_core()
    for result in results:
        for index, message in enumerate(result.messages or ()):
            if type(message) is aviary.Message and message.role == "assistant":
                result.messages[index] = aviary.ToolRequestMessage(  # type: ignore[index]
                    content=message.content, tool_calls=[], info=message.info
                )


class TextNotifier:
    """Feeds each text delta to every callback in order, awaiting whatever a callback returns that is
    awaitable (an ``async def``, or e.g. ``lambda d: queue.put(d)`` on an ``asyncio.Queue``).

    :meth:`delivered` tells whether any text has reached the callbacks, after which a failed attempt
    must not be retried: the callbacks would see the text twice.
    """

    __slots__ = ("_callbacks", "_delivered")

    def __init__(self, callbacks: Iterable[TextCallback]) -> None:
        self._callbacks = tuple(callbacks)
        self._delivered = False

    def delivered(self) -> bool:
        return self._delivered

    async def __call__(self, delta: str) -> None:
        self._delivered = True
        for callback in self._callbacks:
            returned = callback(delta)
            if returned is not None and inspect.isawaitable(returned):
                await returned
