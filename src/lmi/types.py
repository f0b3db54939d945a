"""Small shared types: :class:`TokenUsage`, :class:`LLMResult`, :class:`Embeddable` and session ids.

aviary imports litellm, which takes seconds, so message fields hold aviary Messages but are typed
``Any`` to keep ``import lmi`` light; ``LLMResponse`` (a union of litellm classes) is built on first access.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_serializer

cvar_session_id: ContextVar[UUID | None] = ContextVar("lmi_session_id", default=None)


@contextmanager
def set_llm_session_ids(session_id: UUID) -> Iterator[None]:
    """Inside the block, every new :class:`LLMResult` gets ``session_id`` (tasks created inside too)."""
    token = cvar_session_id.set(session_id)
    try:
        yield
    finally:
        cvar_session_id.reset(token)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What the provider billed for one call, in one convention for every provider.

    ``prompt_tokens`` counts every input token, cached ones included (OpenAI's ``prompt_tokens``;
    Anthropic's ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
    ``completion_tokens`` counts every output token, reasoning included, over all n choices.
    ``estimated`` is true when the provider gave no usage and the counts come from a tokenizer.

    What else the bill depends on: ``cache_creation_1h_tokens`` (of the cache writes, those kept for an
    hour), ``audio_prompt_tokens`` / ``audio_completion_tokens`` (of the prompt / completion, audio),
    ``web_search_requests`` (server-side searches, billed per search) and ``service_tier`` as the
    response names it (``"priority"``, ``"flex"``, ...; None or ``"default"`` for the standard price).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cache_creation_1h_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    web_search_requests: int = 0
    service_tier: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(self.prompt_tokens - self.cache_read_tokens - self.cache_creation_tokens, 0)


class _RandomIds:
    """Random (version 4) UUIDs, like ``uuid.uuid4``, from OS randomness fetched 4 KiB at a time.

    ``uuid4`` makes one ``os.urandom`` call per id; that call releases the GIL, and in litellm's
    many-threaded process getting it back costs more than everything else in building a result.
    """

    _BATCH_BYTES = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._used = 0
        self._fork_hooked = False

    def __call__(self) -> UUID:
        with self._lock:
            if self._used >= len(self._pool):
                if not self._fork_hooked:  # a forked child must not repeat its parent's ids
                    os.register_at_fork(after_in_child=self._forget)
                    self._fork_hooked = True
                self._pool, self._used = os.urandom(self._BATCH_BYTES), 0
            start = self._used
            self._used = start + 16
            random_bytes = self._pool[start : start + 16]
        return UUID(bytes=random_bytes, version=4)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._used = b"", 0


_random_id = _RandomIds()


class Deferred:
    """A field value built on its first read.

    ``LLMResult.messages`` and ``.prompt`` hold aviary Messages, and importing aviary imports litellm
    (seconds, ~200 MB). A call whose caller only reads the text should pay neither, so these fields may
    hold a ``Deferred`` that builds the messages when the field is first read, dumped, compared, copied
    or pickled; it is then replaced by the value.
    """

    __slots__ = ("_build", "_preview", "_value")

    def __init__(self, build: Callable[[], Any], preview: Any = None) -> None:
        self._build: Callable[[], Any] | None = build
        self._preview = preview  # what repr shows until the value is built (repr must not build it)
        self._value: Any = None

    @property
    def preview(self) -> Any:
        """The plain form given at construction (for messages: their dicts), without building."""
        return self._preview

    def get(self) -> Any:
        if self._build is not None:
            self._value, self._build = self._build(), None
        return self._value

    def __reduce__(self) -> tuple[Any, ...]:
        return _identity, (self.get(),)

    def __repr__(self) -> str:
        return repr(self._value) if self._build is None else f"<deferred {self._preview!r}>"


def _identity(value: Any) -> Any:
    return value


class _Resolving:
    """A data descriptor over a pydantic field: reading it resolves a :class:`Deferred` in place."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__.get(self.name)
        if type(value) is Deferred:
            value = obj.__dict__[self.name] = value.get()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


_DEFERRABLE = ("messages", "prompt")


class LLMResult(BaseModel):
    """One completion: its text and messages, what it cost and how long it took.

    ``str(result)`` is the text. With n>1 a call returns one result per choice, in ``index`` order, and
    the call's usage and cost are split across them: token counts in integer shares (the remainder on the
    first result), the cost in shares that ``sum(r.cost for r in results)`` adds up to the bill exactly,
    so summing over results never double counts. ``priced`` is False when the price map does not know the
    model or something it billed (audio, a service tier, ...): ``cost`` is then $0 or an estimate.
    Unknown keyword arguments are ignored (as in fhlmi), so results serialised by other versions load.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore", populate_by_name=True)

    id: UUID = Field(default_factory=_random_id)
    session_id: UUID | None = Field(
        default_factory=lambda: cvar_session_id.get(),
        alias="answer_id",
        description="The session (see set_llm_session_ids) this result belongs to.",
    )
    name: str | None = Field(default=None, description="Caller-given name for this result.")
    config: dict[str, Any] | None = None
    model: str
    index: int = Field(default=0, description="The provider's index of this completion among the n.")
    text: str | None = None
    messages: list[Any] | None = Field(
        default=None, description="The assistant's aviary Message(s), a ToolRequestMessage for tool calls."
    )
    prompt: str | list[Any] | Any | None = Field(default=None, description="The messages that were sent.")
    prompt_count: int | None = Field(default=0, ge=0)
    completion_count: int | None = Field(default=0, ge=0)
    cache_read_tokens: int | None = Field(default=0, ge=0, frozen=True)
    cache_creation_tokens: int | None = Field(default=0, ge=0, frozen=True)
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    reasoning_content: str | None = None
    finish_reason: str | None = None
    cost: float = Field(default=0.0, ge=0, frozen=True, description="USD billed for this completion.")
    priced: bool = True
    seconds_to_first_token: float = Field(default=0.0, ge=0)
    seconds_to_last_token: float = Field(default=0.0, ge=0)
    date: str = Field(default_factory=_now_iso, description="When the call finished (ISO 8601, UTC).")
    logprob: float | None = None
    top_logprobs: list[list[tuple[str, float]]] | None = None
    response_id: str | None = Field(default=None, description="OpenAI Responses API id, for chaining.")
    provider_response_id: str | None = None
    cache_hit: bool = Field(default=False, description="True when the answer came from the response cache.")
    cost_saved: float = Field(
        default=0.0, description="On a cache hit, what the stored answer cost (USD): saved by this call."
    )

    @property
    def provider(self) -> str:
        """The litellm provider of ``model`` (``"openai"``, ``"anthropic"``, ...)."""
        from lmi._lazy import litellm

        return str(litellm().get_llm_provider(self.model)[1])

    def get_supported_openai_params(self) -> list[str] | None:
        """The OpenAI parameters litellm says ``model`` supports."""
        from lmi._lazy import litellm

        params: list[str] | None = litellm().get_supported_openai_params(self.model)
        return params

    def __str__(self) -> str:
        return self.text or ""

    @field_serializer(*_DEFERRABLE, mode="wrap")
    def _resolve_deferred(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        return handler(value.get() if type(value) is Deferred else value)

    def _resolve(self) -> None:
        for name in _DEFERRABLE:
            getattr(self, name)

    def __eq__(self, other: object) -> bool:
        self._resolve()
        if isinstance(other, LLMResult):
            other._resolve()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # as pydantic models: mutable, compared by value

    def __getstate__(self) -> dict[Any, Any]:
        self._resolve()
        return super().__getstate__()

    def __copy__(self) -> LLMResult:
        self._resolve()
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> LLMResult:
        self._resolve()
        return super().__deepcopy__(memo)

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_count or 0,
            completion_tokens=self.completion_count or 0,
            cache_read_tokens=self.cache_read_tokens or 0,
            cache_creation_tokens=self.cache_creation_tokens or 0,
            reasoning_tokens=self.reasoning_tokens,
            estimated=self.usage_estimated,
        )


for _name in _DEFERRABLE:  # after pydantic built the class: reads of these fields resolve a Deferred
    type.__setattr__(LLMResult, _name, _Resolving(_name))


class Embeddable(BaseModel):
    """Anything that carries an embedding vector (fhlmi's base for embedded documents)."""

    embedding: list[float] | None = Field(default=None, repr=False)


def __getattr__(name: str) -> Any:
    if name == "LLMResponse":  # litellm's response classes: importing them here would import litellm
        from lmi._lazy import litellm

        module = litellm()
        value = module.ModelResponse | module.EmbeddingResponse | module.ModelResponseStream
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Deferred",
    "Embeddable",
    "LLMResponse",  # noqa: F822 - built on first access by __getattr__
    "LLMResult",
    "TokenUsage",
    "cvar_session_id",
    "set_llm_session_ids",
]
