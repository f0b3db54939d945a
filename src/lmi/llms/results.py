"""Turning what a provider sent back into :class:`LLMResult` objects: the only place they are built.

A litellm response and a finished stream are both first reduced to :class:`Completion` (choices plus
billed usage); :func:`build_results` then makes the results, prices the call and splits its usage across
the n choices so that sums over results equal the bill.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel

from lmi._lazy import aviary_core
from lmi.cost import CallCost, has_price_override, model_prices, price_usage, split_cost
from lmi.exceptions import MalformedResponseError
from lmi.types import Deferred, LLMResult, TokenUsage

_PYDANTIC_GETATTR = getattr(BaseModel, "__getattr__", None)
_PLAIN_FIELD_KEYS: dict[tuple[type, str], bool] = {}  # a few litellm classes times a few keys
_MISSING = object()


@dataclass(slots=True)
class Choice:
    index: int = 0  # the provider's choice index: results are returned in this order
    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments": str}
    reasoning_content: str | None = None
    finish_reason: str | None = None
    logprob: float | None = None
    top_logprobs: list[list[tuple[str, float]]] | None = None


@dataclass(slots=True)
class Completion:
    """A provider's answer, provider-neutral: its choices and what was billed."""

    choices: list[Choice]
    usage: TokenUsage | None
    response_model: str | None = None
    response_id: str | None = None
    first_delta_at: float | None = None  # streams: perf_counter() at the first delta of anything


def _plain_fields_only(cls: type, key: str) -> bool:
    """Whether ``getattr`` on a ``cls`` instance can only find ``key`` among its fields and extras.

    True for a pydantic model whose class has no attribute ``key`` (no property, method, class
    attribute or private attribute) and that keeps pydantic's own ``__getattr__``.
    """
    plain = (
        issubclass(cls, BaseModel)
        and getattr(cls, "__getattr__", None) is _PYDANTIC_GETATTR
        and key not in getattr(cls, "__private_attributes__", {})
        and not hasattr(cls, key)
    )
    _PLAIN_FIELD_KEYS[cls, key] = plain
    return plain


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``getattr(obj, key, default)``, or ``obj.get(key, default)`` for dicts: litellm hands back both.

    Runs ~10 times per response and per stream chunk. On litellm's pydantic objects most keys are
    extras or deleted unset fields, which ``getattr`` finds only through pydantic's ``__getattr__`` (and
    by raising, when missing): microseconds each. Reading the instance's fields and extras directly gives
    the same answer in a fraction of that.
    """
    if obj is None:
        return default
    cls = type(obj)
    if cls is dict:
        return obj.get(key, default)
    plain = _PLAIN_FIELD_KEYS.get((cls, key))
    if plain is None:
        plain = _plain_fields_only(cls, key)
    if plain:
        value = obj.__dict__.get(key, _MISSING)
        if value is not _MISSING:
            return value
        extra = obj.__pydantic_extra__
        return extra.get(key, default) if extra else default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def usage_from_litellm(usage: Any, service_tier: str | None = None) -> TokenUsage | None:
    """Map litellm's normalised ``Usage`` to :class:`TokenUsage` (prompt counts include cache tokens).

    None when the provider reported no usage: litellm then substitutes zeros, and no real call is billed
    zero prompt and zero completion tokens. ``service_tier`` is the response's own (OpenAI puts it on the
    response, Anthropic inside ``usage``).
    """
    if usage is None:
        return None
    prompt_tokens = _get(usage, "prompt_tokens") or 0
    completion_tokens = _get(usage, "completion_tokens") or 0
    if not prompt_tokens and not completion_tokens:
        return None
    prompt_details = _get(usage, "prompt_tokens_details")
    completion_details = _get(usage, "completion_tokens_details")
    cache_read = _get(prompt_details, "cached_tokens") or _get(usage, "cache_read_input_tokens") or 0
    cache_creation = (
        _get(usage, "cache_creation_input_tokens") or _get(prompt_details, "cache_creation_tokens") or 0
    )
    written = _get(prompt_details, "cache_creation_token_details")
    return TokenUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=_get(completion_details, "reasoning_tokens") or 0,
        cache_creation_1h_tokens=_get(written, "ephemeral_1h_input_tokens") or 0,
        audio_prompt_tokens=_get(prompt_details, "audio_tokens") or 0,
        audio_completion_tokens=_get(completion_details, "audio_tokens") or 0,
        web_search_requests=_get(_get(usage, "server_tool_use"), "web_search_requests") or 0,
        service_tier=service_tier or _get(usage, "service_tier"),
    )


def _logprob(logprobs: Any) -> float | None:
    content = _get(logprobs, "content")
    if not content:
        return None
    return sum(_get(token, "logprob") or 0.0 for token in content)


def top_logprobs_of(logprobs: Any) -> list[list[tuple[str, float]]] | None:
    """Per token, its ``(token, logprob)`` alternatives (when ``top_logprobs`` was asked for)."""
    content = _get(logprobs, "content")
    if not content:
        return None
    return [
        [
            (str(_get(alt, "token")), float(_get(alt, "logprob") or 0.0))
            for alt in _get(token, "top_logprobs") or ()
        ]
        for token in content
    ]


def _tool_call(call: Any) -> dict[str, Any]:
    function = _get(call, "function")
    return {
        "id": _get(call, "id"),
        "name": _get(function, "name"),
        "arguments": _get(function, "arguments") or "{}",
    }


def completion_from_response(response: Any, indices: list[int] | None = None) -> Completion:
    """Reduce a litellm ``ModelResponse`` (OpenAI, Anthropic and every other provider) to a Completion.

    Choices are put in the order of their index: ``indices`` when given (the provider's own, one per
    choice), else each choice's ``index``.
    """
    choices = []
    for position, choice in enumerate(response.choices):
        message = choice.message
        index = indices[position] if indices is not None else _get(choice, "index")
        choices.append(
            Choice(
                index=index if isinstance(index, int) else position,
                text=message.content,
                tool_calls=[_tool_call(call) for call in message.tool_calls or ()],
                reasoning_content=_get(message, "reasoning_content"),
                finish_reason=choice.finish_reason,
                logprob=_logprob(logprobs := _get(choice, "logprobs")),
                top_logprobs=top_logprobs_of(logprobs),
            )
        )
    choices.sort(key=_by_index)  # a provider may send them in any order
    return Completion(
        choices=choices,
        usage=usage_from_litellm(_get(response, "usage"), _get(response, "service_tier")),
        response_model=_get(response, "model"),
        response_id=_get(response, "id"),
    )


def _by_index(choice: Choice) -> int:
    return choice.index


class StreamAssembler:
    """Accumulates litellm stream chunks into a :class:`Completion`, choice by choice.

    Text arrives in many small pieces; they are collected in lists and joined once in :meth:`finish`,
    so a long stream costs linear time, not quadratic. ``first_delta_at`` is the ``time.perf_counter()``
    reading at the first delta of anything (text, reasoning or a tool call): the first token.
    """

    __slots__ = (
        "_choices",
        "_logprobs",
        "_reasoning",
        "_texts",
        "_tool_calls",
        "first_delta_at",
        "response_id",
        "response_model",
        "service_tier",
        "usage",
        "usage_reported",
    )

    def __init__(self) -> None:
        self._choices: dict[int, Choice] = {}
        self._texts: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        # per choice, per tool call position: id, name and the pieces of the arguments string
        self._tool_calls: dict[int, dict[int, tuple[dict[str, Any], list[str]]]] = {}
        self._logprobs: dict[int, list[float]] = {}
        self.usage: TokenUsage | None = None
        self.usage_reported: Any = None  # the last usage a chunk carried, as litellm gave it
        self.service_tier: str | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.first_delta_at: float | None = None

    def add(self, chunk: Any) -> str:
        """Take one chunk; return the text it adds to the first choice (for streaming callbacks)."""
        if self.response_id is None:
            self.response_id = _get(chunk, "id")
            self.response_model = _get(chunk, "model")
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage_reported = usage
        tier = _get(chunk, "service_tier")
        if tier:
            self.service_tier = tier
        added = ""
        for choice in _get(chunk, "choices") or ():
            index = _get(choice, "index") or 0
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = Choice(index=index)
            delta = _get(choice, "delta")
            content = _get(delta, "content")
            reasoning = _get(delta, "reasoning_content")
            tool_calls = _get(delta, "tool_calls")
            if self.first_delta_at is None and (content or reasoning or tool_calls):
                self.first_delta_at = time.perf_counter()
            if content:
                self._texts.setdefault(index, []).append(content)
                if index == 0:
                    added += content
            if reasoning:
                self._reasoning.setdefault(index, []).append(reasoning)
            for call in tool_calls or ():
                self._add_tool_call(index, call)
            logprobs = _get(_get(choice, "logprobs"), "content")
            if logprobs:
                self._logprobs.setdefault(index, []).extend(_get(t, "logprob") or 0.0 for t in logprobs)
            finish_reason = _get(choice, "finish_reason")
            if finish_reason:
                state.finish_reason = finish_reason
        return added

    def _add_tool_call(self, choice_index: int, call: Any) -> None:
        calls = self._tool_calls.setdefault(choice_index, {})
        position = _get(call, "index")
        if position is None:
            position = len(calls)
        state, arguments = calls.setdefault(position, ({"id": None, "name": None}, []))
        function = _get(call, "function")
        state["id"] = _get(call, "id") or state["id"]
        state["name"] = _get(function, "name") or state["name"]
        piece = _get(function, "arguments")
        if piece:
            arguments.append(piece)

    def finish(self) -> Completion:
        for index, state in self._choices.items():
            if index in self._texts:
                state.text = "".join(self._texts[index])
            if index in self._reasoning:
                state.reasoning_content = "".join(self._reasoning[index])
        choices = [self._choices[i] for i in sorted(self._choices)] or [Choice(text="")]
        for choice in choices:
            index = choice.index
            calls = self._tool_calls.get(index)
            if calls:
                choice.tool_calls = [
                    {**calls[i][0], "arguments": "".join(calls[i][1])} for i in sorted(calls)
                ]
            if index in self._logprobs:
                choice.logprob = sum(self._logprobs[index])
        if self.usage_reported is not None:
            self.usage = usage_from_litellm(self.usage_reported, self.service_tier)
        return Completion(choices, self.usage, self.response_model, self.response_id, self.first_delta_at)


def _assistant_message(choice: Choice) -> Any:
    """The aviary message for ``choice``; ValueError when a tool call's arguments are not JSON."""
    aviary = aviary_core()
    if not choice.tool_calls:
        return aviary.Message(role="assistant", content=choice.text)
    calls = []
    for call in choice.tool_calls:
        try:
            arguments = json.loads(call["arguments"]) if call["arguments"] else {}
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"Tool call {call['name']!r} returned arguments that are not JSON: {call['arguments']!r}"
            ) from exc
        function = aviary.ToolCallFunction(name=call["name"], arguments=arguments)
        calls.append(aviary.ToolCall(id=call["id"], function=function))
    return aviary.ToolRequestMessage(content=choice.text, tool_calls=calls)


def _text_messages(text: str | None) -> list[Any]:
    return [aviary_core().Message(role="assistant", content=text)]


def _aviary_prompt(prompt: list[Any]) -> list[Any]:
    message = aviary_core().Message
    return [message(**m) if type(m) is dict else m for m in prompt]


def _split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integer shares that add up exactly; the remainder goes to the first."""
    if parts == 1:
        return [total]
    share, remainder = divmod(total, parts)
    return [share + remainder] + [share] * (parts - 1)


def pricing_model(completion: Completion, requested_model: str) -> str:
    """The model to price: the one we asked for when the user priced it, else the one the provider says
    answered when it has a known price, else the one we asked for."""
    answered = completion.response_model
    if has_price_override(requested_model) or not answered or answered == requested_model:
        return requested_model
    if model_prices(answered) is not None:
        return answered
    return requested_model


def _message_text(message: Any) -> str:
    content = getattr(message, "content", None)
    if content is None and isinstance(message, dict):
        content = message.get("content")
    return content if isinstance(content, str) else json.dumps(content) if content else ""


def estimate_usage(prompt: list[Any], choices: list[Choice]) -> TokenUsage:
    """Token counts from the texts themselves (cl100k_base), for providers that report no usage."""
    from lmi._tokenizer import cl100k

    encoding = cl100k()

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text)) if text else 0

    # OpenAI's chat format adds about 3 tokens per message and 3 to prime the reply.
    prompt_tokens = sum(count(_message_text(m)) + 3 for m in prompt) + 3
    completion_tokens = sum(
        count(choice.text or "") + sum(count(str(call["arguments"])) for call in choice.tool_calls)
        for choice in choices
    )
    return TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=True)


@dataclass(frozen=True, slots=True)
class Bill:
    """What one call was billed: its usage (reported or estimated), the model priced, and the cost."""

    usage: TokenUsage
    model: str
    cost: CallCost


def bill_completion(completion: Completion, requested_model: str, prompt: list[Any] | None) -> Bill:
    """Price a completion; when the provider reported no usage it is counted with a tokenizer and flagged
    as estimated. Never raises for anything the provider sent, so the bill is known before any step that
    can fail."""
    usage = completion.usage or estimate_usage(prompt or [], completion.choices)
    model = pricing_model(completion, requested_model)
    return Bill(usage, model, price_usage(model, usage))


def build_results(
    completion: Completion,
    *,
    name: str,
    requested_model: str,
    prompt: list[Any] | None,
    started: float,
    first_token: float | None = None,
    finished: float,
    bill: Bill | None = None,
) -> tuple[list[LLMResult], TokenUsage, float]:
    """Make one LLMResult per choice; return them with the call's usage and cost.

    ``started``, ``first_token`` and ``finished`` are ``time.perf_counter()`` readings; ``bill`` is the
    call's :func:`bill_completion` when already made. Usage and cost are split across the choices so that
    sums over the results equal the bill exactly. A tool call whose arguments are not JSON raises
    :class:`~lmi.exceptions.MalformedResponseError` carrying every result (that one with no messages).
    """
    bill = bill or bill_completion(completion, requested_model, prompt)
    usage, cost = bill.usage, bill.cost
    n = max(len(completion.choices), 1)
    prompts, completions = _split(usage.prompt_tokens, n), _split(usage.completion_tokens, n)
    cache_reads, cache_writes = _split(usage.cache_read_tokens, n), _split(usage.cache_creation_tokens, n)
    reasoning = _split(usage.reasoning_tokens, n)
    costs = split_cost(cost.usd, n)
    if prompt and any(type(m) is dict for m in prompt):  # plain messages: aviary ones when first read
        deferred_prompt: Any = Deferred(partial(_aviary_prompt, prompt), prompt)
    else:
        deferred_prompt = None
    date = datetime.now(UTC).isoformat()
    to_last = finished - started
    to_first = (first_token - started) if first_token is not None else 0.0
    results = []
    failures: list[ValueError] = []
    for position, choice in enumerate(completion.choices):
        # Tool calls are built (and their arguments checked) now; a text answer's aviary message is built
        # when first read, so a caller reading only the text never imports aviary.
        messages: list[Any] | None = None
        if choice.tool_calls:
            try:
                messages = [_assistant_message(choice)]
            except ValueError as exc:
                failures.append(exc)
        result = LLMResult(
            index=choice.index,
            model=name,
            text=choice.text or "",
            messages=messages,
            prompt=prompt if deferred_prompt is None else None,
            prompt_count=prompts[position],
            completion_count=completions[position],
            cache_read_tokens=cache_reads[position],
            cache_creation_tokens=cache_writes[position],
            reasoning_tokens=reasoning[position],
            usage_estimated=usage.estimated,
            reasoning_content=choice.reasoning_content,
            finish_reason=choice.finish_reason,
            cost=costs[position],
            priced=cost.priced,
            seconds_to_first_token=to_first,
            seconds_to_last_token=to_last,
            date=date,
            logprob=choice.logprob,
            top_logprobs=choice.top_logprobs,
            provider_response_id=completion.response_id,
        )
        if not choice.tool_calls:
            preview = [{"role": "assistant", "content": choice.text}]
            result.__dict__["messages"] = Deferred(partial(_text_messages, choice.text), preview)
        if deferred_prompt is not None:
            result.__dict__["prompt"] = deferred_prompt
        result.__pydantic_fields_set__.update(("messages", "prompt"))
        results.append(result)
    if failures:
        raise MalformedResponseError(f"{name}: {failures[0]}", results=results) from failures[0]
    return results, usage, cost.usd
