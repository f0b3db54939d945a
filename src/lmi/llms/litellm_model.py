"""``LiteLLMModel``: every provider LiteLLM reaches, behind :class:`~lmi.llms.base.LLMModel`.

A call goes: limiter (requests, then estimated tokens) → one litellm request → results built from the
response or the finished stream → limiter settled to the billed tokens → cost recorded. Retries and
fallbacks wrap that whole attempt, so each model tried is limited and billed under its own name.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr, model_validator

from lmi._lazy import litellm
from lmi.cost import GLOBAL_COST_TRACKER
from lmi.exceptions import ModelCallError
from lmi.llms.base import LLMModel, TextCallback, text_notifier
from lmi.llms.config import DEFAULT_MODEL, Deployment, ModelSettings, parse_settings
from lmi.llms.results import Completion, StreamAssembler, build_results, completion_from_response
from lmi.llms.retry import with_retries_and_fallbacks
from lmi.types import LLMResult

if TYPE_CHECKING:
    from aviary.core import Message

_CHARS_PER_TOKEN = 4  # a deliberately cheap estimate; the limiter is settled to the billed count after


def _message_dict(message: Message) -> dict[str, Any]:
    data = message.model_dump(by_alias=True, exclude_none=True)
    data.pop("info", None)
    return data


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Rough prompt size for charging a token limiter before the provider tells the real count."""
    chars = sum(len(str(message.get("content") or "")) for message in messages)
    return max(chars // _CHARS_PER_TOKEN + 4 * len(messages), 1)


class LiteLLMModel(LLMModel):
    """A chat model reached through LiteLLM.

    ``config`` takes LiteLLM's router shape (``model_list``, ``fallbacks``, ``router_kwargs``) or a flat
    dict of completion parameters with an optional ``name``; ``rate_limit`` and ``request_limit`` map
    model names to limits for :mod:`lmi.rate_limiter`. The config is parsed once, here.
    """

    name: str = DEFAULT_MODEL
    _settings: ModelSettings = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _name_from_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            config = data.get("config") or {}
            if isinstance(config, dict):
                if config.get("name"):
                    data = {**data, "name": config["name"]}
                elif isinstance(config.get("model_list"), list) and config["model_list"]:
                    first = config["model_list"][0]
                    if isinstance(first, dict) and isinstance(first.get("model_name"), str):
                        data = {**data, "name": first["model_name"]}
        return data

    @model_validator(mode="after")
    def _parse_config(self) -> LiteLLMModel:
        self._settings = parse_settings(self.name, self.config)
        return self

    @property
    def settings(self) -> ModelSettings:
        return self._settings

    def __repr__(self) -> str:  # never show api keys that may sit in config
        return f"{type(self).__name__}(name={self.name!r})"

    __str__ = __repr__

    # -- the provider call -------------------------------------------------------------------------------

    def _request(
        self, deployment: Deployment, messages: list[Message], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        request = {**deployment.params, **kwargs}
        request["messages"] = [_message_dict(m) for m in messages]
        if self._settings.timeout is not None:
            request.setdefault("timeout", self._settings.timeout)
        request.setdefault("max_retries", 0)  # retries are ours: one policy, one count, no hidden waits
        return request

    async def _charge(self, deployment: Deployment, request: dict[str, Any]) -> tuple[Any, int]:
        """Acquire the request and token limits for ``deployment``; return what settling needs."""
        from lmi.rate_limiter import GLOBAL_LIMITER

        name = deployment.name
        request_key, token_key = ("client|request", name), ("client", name)
        request_limit = self._settings.request_limit.get(name)
        if request_limit is not None or request_key in GLOBAL_LIMITER.rate_config:
            await GLOBAL_LIMITER.try_acquire(request_key, rate_limit=request_limit)
        token_limit = self._settings.rate_limit.get(name)
        if token_limit is None and token_key not in GLOBAL_LIMITER.rate_config:
            return None, 0
        estimate = estimate_prompt_tokens(request["messages"])
        await GLOBAL_LIMITER.try_acquire(token_key, rate_limit=token_limit, weight=estimate)
        return token_limit, estimate

    async def _settle(self, deployment: Deployment, limit: Any, estimate: int, billed: int) -> None:
        """Correct the token limiter from the estimate to what was billed (nothing, if the call failed)."""
        from lmi.rate_limiter import GLOBAL_LIMITER

        if billed != estimate:
            await GLOBAL_LIMITER.adjust(("client", deployment.name), billed - estimate, rate_limit=limit)

    async def _attempt(
        self,
        deployment: Deployment,
        messages: list[Message],
        kwargs: dict[str, Any],
        notify: Callable[[str], Awaitable[None]] | None,
    ) -> list[LLMResult]:
        request = self._request(deployment, messages, kwargs)
        limit, estimate = await self._charge(deployment, request)
        billed = 0
        try:
            started = time.perf_counter()
            if notify is None:
                response = await litellm().acompletion(**request)
                completion, first_token = completion_from_response(response), None
            else:
                completion, first_token = await self._stream(deployment, request, notify)
            finished = time.perf_counter()
            results, usage, cost = build_results(
                completion,
                name=deployment.name,
                requested_model=deployment.model,
                prompt=messages,
                started=started,
                first_token=first_token,
                finished=finished,
            )
            billed = usage.total_tokens
        finally:  # also on failure and cancellation: no charge is left half-applied
            if estimate:
                await self._settle(deployment, limit, estimate, billed)
        GLOBAL_COST_TRACKER.record(deployment.name, usage, cost)
        return results

    async def _stream(
        self, deployment: Deployment, request: dict[str, Any], notify: Callable[[str], Awaitable[None]]
    ) -> tuple[Completion, float | None]:
        request["stream"] = True
        request.setdefault("stream_options", {"include_usage": True})  # usage is what we bill by
        stream = await litellm().acompletion(**request)
        assembler = StreamAssembler()
        first_token: float | None = None
        try:
            async for chunk in stream:
                delta = assembler.add(chunk)
                if delta:
                    if first_token is None:
                        first_token = time.perf_counter()
                    await notify(delta)
        except Exception as exc:
            if first_token is not None:
                # Text already reached the callbacks: retrying would repeat it, so stop here.
                raise ModelCallError([(deployment.name, exc)]) from exc
            raise
        finally:
            # Release the connection however the stream ended: finished, failed or cancelled.
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):  # closing must never mask the stream's outcome
                    await close()
        return assembler.finish(), first_token

    async def _run(
        self,
        messages: list[Message],
        kwargs: dict[str, Any],
        notify: Callable[[str], Awaitable[None]] | None,
    ) -> list[LLMResult]:
        async def attempt(deployment: Deployment) -> list[LLMResult]:
            return await self._attempt(deployment, messages, kwargs, notify)

        return await with_retries_and_fallbacks(self._settings.chain, self._settings.retry, attempt)

    async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
        return await self._run(messages, kwargs, None)

    async def acompletion_iter(
        self, messages: list[Message], callbacks: list[TextCallback] | None = None, **kwargs: Any
    ) -> AsyncIterator[LLMResult]:
        for result in await self._run(messages, kwargs, text_notifier(list(callbacks or ()))):
            yield result
