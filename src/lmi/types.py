"""Small shared types: :class:`TokenUsage` and :class:`LLMResult`.

aviary imports litellm, which takes seconds, so message fields hold aviary Messages but are typed
``Any`` to keep ``import lmi`` light.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What the provider billed for one call, in one convention for every provider.

    ``prompt_tokens`` counts every input token, cached ones included (OpenAI's ``prompt_tokens``;
    Anthropic's ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
    ``completion_tokens`` counts every output token, reasoning included, over all n choices.
    ``estimated`` is true when the provider gave no usage and the counts come from a tokenizer.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(self.prompt_tokens - self.cache_read_tokens - self.cache_creation_tokens, 0)


class LLMResult(BaseModel):
    """One completion: its text and messages, what it cost and how long it took.

    ``str(result)`` is the text. With n>1 a call returns one result per choice; the usage and cost of
    the whole call sit on the first result only, so summing over results never double counts.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    id: UUID = Field(default_factory=uuid4)
    name: str | None = Field(default=None, description="Caller-given name for this result.")
    model: str = ""
    text: str | None = ""
    messages: list[Any] | None = Field(
        default=None, description="The assistant's aviary Message(s), a ToolRequestMessage for tool calls."
    )
    prompt: list[Any] | None = Field(default=None, description="The aviary Messages that were sent.")
    prompt_count: int = 0
    completion_count: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    reasoning_content: str | None = None
    finish_reason: str | None = None
    cost: float = 0.0
    seconds_to_first_token: float = 0.0
    seconds_to_last_token: float = 0.0
    date: datetime = Field(default_factory=lambda: datetime.now(UTC))
    logprob: float | None = None
    provider_response_id: str | None = None

    def __str__(self) -> str:
        return self.text or ""

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_count,
            completion_tokens=self.completion_count,
            cache_read_tokens=self.cache_read_tokens,
            cache_creation_tokens=self.cache_creation_tokens,
            reasoning_tokens=self.reasoning_tokens,
            estimated=self.usage_estimated,
        )


__all__ = ["LLMResult", "TokenUsage"]
