"""``LiteLLMModel``: every provider LiteLLM reaches, behind :class:`~lmi.llms.base.LLMModel`.

A call goes: limits reserved (:mod:`lmi.llms.limits`) → one litellm request → results built from the
response or the finished stream → cost recorded → limits settled to the billed tokens. Retries and
fallbacks wrap that whole attempt, so each model tried is limited and billed under its own name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import cache, partial
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator

from lmi import telemetry
from lmi._lazy import aviary_core, litellm
from lmi.cache.keys import ChatKeys
from lmi.cache.spec import cache_for
from lmi.cost import (
    GLOBAL_COST_TRACKER,
    Budget,
    Holds,
    active_budgets,
    cost_tracking_enabled,
    reserve_all,
    settle_budgets,
)
from lmi.llms import responses, setup
from lmi.llms.base import LLMModel, TextCallback, TextNotifier
from lmi.llms.config import DEFAULT_MODEL, Deployment, ModelSettings
from lmi.llms.limits import NO_LIMITS, CallLimits, reserve_call
from lmi.llms.postprocess import apply_tool_parser, refuse_content_filter, validate_responses
from lmi.llms.results import Bill, Completion, bill_completion, build_results
from lmi.llms.retry import is_provider_error, off_the_attempt_clock, with_retries_and_fallbacks
from lmi.llms.specs import LLMConfig, ModelSpec, deployment_of
from lmi.llms.transports import LITELLM_ROUTE, Route, Transport, route_for
from lmi.llms.transports.wire import BeforeSend
from lmi.types import LLMResult

if TYPE_CHECKING:
    from aviary.core import Message

    from lmi.cache.store import CacheStore

ToolParser = Callable[..., Any]  # (litellm Choices | str, tools) -> Message | ToolRequestMessage | list

_PLAIN_MESSAGE_FIELDS = {"role", "content", "content_is_json_str", "info", "cache_breakpoint"}


def _message_dict(message: Message) -> dict[str, Any]:
    """The message as litellm takes it, without aviary's ``info``.

    Every call serialises its whole conversation, so the common case (a plain text ``Message``) is built
    directly: it is the dict ``model_dump`` returns for such a message, at a fraction of the cost.
    A plain dict (see :func:`~lmi.llms.base.normalize_messages`) is already that.
    """
    if type(message) is dict:
        return message
    if (
        type(message) is _plain_message_class()
        and not message.content_is_json_str
        and not message.cache_breakpoint
    ):
        if message.content is None:
            return {"role": message.role}
        return {"role": message.role, "content": message.content}
    data = message.model_dump(by_alias=True, exclude_none=True)
    data.pop("info", None)
    if "tool_calls" in data and not data["tool_calls"]:
        del data["tool_calls"]  # a ToolRequestMessage without calls (tools=[]) is a plain message to send
    return data


@cache
def _rate_limiter() -> ModuleType:
    """``lmi.rate_limiter``, imported on the first call (its ``GLOBAL_LIMITER`` is read on each)."""
    import lmi.rate_limiter

    return lmi.rate_limiter


@cache
def _plain_message_class() -> type | None:
    """aviary's ``Message``, when its fields are the ones the fast path of ``_message_dict`` knows."""
    message_class: type = aviary_core().Message
    if set(getattr(message_class, "model_fields", ())) != _PLAIN_MESSAGE_FIELDS:
        return None
    return message_class


class LiteLLMModel(LLMModel):
    """A chat model reached through LiteLLM.

    ``config`` takes LiteLLM's router shape (``model_list``, ``fallbacks``, ``router_kwargs``) or a flat
    dict of completion parameters with an optional ``name``; ``rate_limit`` and ``request_limit`` map
    model names to limits for :mod:`lmi.rate_limiter`. The config is parsed once, here.
    """

    _takes_plain_messages: ClassVar[bool] = True  # plain dicts skip aviary (and litellm) entirely

    name: str = DEFAULT_MODEL
    tool_parser: ToolParser | None = Field(
        default=None, description="Turns each choice into the assistant's message(s) instead of lmi."
    )
    llm_config: LLMConfig | None = Field(
        default=None, description="The models calls go to, in order; synthesised from config if not given."
    )
    _settings: ModelSettings = PrivateAttr()
    _routes: dict[int, Route] = PrivateAttr()  # by id() of each deployment in _settings
    _cache: CacheStore | None = PrivateAttr(default=None)
    _chat_keys: ChatKeys | None = PrivateAttr(default=None)  # built on the first cached call

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        return setup.prepare(data)

    @model_validator(mode="after")
    def _parse_config(self) -> LiteLLMModel:
        settings, llm_config, config = setup.resolve(
            self.name, self.config, self.llm_config, self.tool_parser
        )
        self._settings, self.llm_config, self.config = settings, llm_config, config
        if not self.name:  # an empty name means the default model: say which
            self.name = settings.primary
        self._connect()
        return self

    def _connect(self) -> None:
        """What the settings lead to but cannot be copied: transports (by deployment) and the cache."""
        settings = self._settings
        self._routes = {
            id(deployment): route_for(deployment, settings.max_connections)
            for deployment in settings.deployments.values()
        }
        self._cache = cache_for(self.config.get("cache"), configured="cache" in self.config)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        private = {k: v for k, v in (state["__pydantic_private__"] or {}).items() if k == "_settings"}
        return {**state, "__pydantic_private__": private}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        private = self.__pydantic_private__
        assert private is not None
        for name, attribute in self.__private_attributes__.items():  # what was not pickled starts afresh
            if name not in private:
                private[name] = attribute.get_default()
        self._connect()

    @property
    def settings(self) -> ModelSettings:
        return self._settings

    def _telemetry_target(self) -> tuple[str, Mapping[str, Any]]:
        params = self._settings.chain[0].params
        model = str(params.get("model", self.name))
        return telemetry.provider_name(model, params.get("custom_llm_provider")), params

    def __repr__(self) -> str:  # never show api keys that may sit in config
        return f"{type(self).__name__}(name={self.name!r})"

    def response_cache(self) -> CacheStore | None:
        """The store named by ``config["cache"]`` (else the env ``LMI_CACHE``), resolved at construction."""
        # Read directly (as in cache_key): a hit is a few dozen microseconds, this lookup would be one.
        cache: CacheStore | None = self.__pydantic_private__["_cache"]  # type: ignore[index]
        return cache

    def cache_key(self, prompt: list[Message], kwargs: dict[str, Any]) -> str:
        """The request as the first model of the chain would receive it, as a key (:mod:`lmi.cache.keys`).

        An answer from a fallback is stored under this key too: it is what this call, so configured, gave.
        """
        # Read directly: pydantic's look-up of a private attribute costs a microsecond, a few % of a hit.
        keys: ChatKeys | None = self.__pydantic_private__["_chat_keys"]  # type: ignore[index]
        if keys is None:
            keys = self._chat_keys = ChatKeys(self._settings.chain[0].params)
        return keys.key(kwargs, [_message_dict(m) for m in prompt])

    def default_n(self) -> int:
        return self._settings.n

    @property
    def provider(self) -> str:
        """The litellm provider of ``name`` (``"openai"``, ``"anthropic"``, ...)."""
        api_base = self._settings.deployments[self._settings.primary].params.get("api_base")
        return str(litellm().get_llm_provider(self.name, api_base=api_base)[1])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model, as litellm counts them."""
        return int(litellm().token_counter(model=self.name, text=text))

    async def check_rate_limit(self, token_count: float, **kwargs: Any) -> None:
        """Wait until ``token_count`` tokens fit ``config["rate_limit"][name]`` (key ``("client", name)``)."""
        if "rate_limit" in self.config:
            await _rate_limiter().GLOBAL_LIMITER.try_acquire(
                ("client", self.name),
                rate_limit=self._settings.rate_limit.get(self.name),
                weight=max(int(token_count), 1),
                **kwargs,
            )

    async def check_request_limit(self, **kwargs: Any) -> None:
        """Wait for one request of ``config["request_limit"][name]`` (key ``("client|request", name)``)."""
        if "request_limit" in self.config:
            await _rate_limiter().GLOBAL_LIMITER.try_acquire(
                ("client|request", self.name),
                rate_limit=self._settings.request_limit.get(self.name),
                **kwargs,
            )

    # -- the provider call -------------------------------------------------------------------------------

    @staticmethod
    def _request(
        settings: ModelSettings, deployment: Deployment, messages: list[Message], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        request = {**deployment.params, **kwargs}
        request["messages"] = [_message_dict(m) for m in messages]
        if "gemini-3" in deployment.model:
            # as fhlmi: Gemini 3 through litellm takes tool responses as user turns
            request["messages"] = [
                {**m, "role": "user"} if m.get("role") == "tool" else m for m in request["messages"]
            ]
        if "reasoning_effort" in request and str(request.get("model", "")).startswith("openrouter/"):
            # OpenRouter takes the effort inside its own "reasoning" object
            extra_body = dict(request.get("extra_body") or {})
            reasoning = dict(extra_body.get("reasoning") or {})
            reasoning["effort"] = request.pop("reasoning_effort")
            request["extra_body"] = {**extra_body, "reasoning": reasoning}
        if settings.timeout is not None:
            request.setdefault("timeout", settings.timeout)
        request.setdefault("max_retries", 0)  # retries are ours: one policy, one count, no hidden waits
        return request

    async def _attempt(
        self,
        settings: ModelSettings,
        deployment: Deployment,
        messages: list[Message],
        kwargs: dict[str, Any],
        notify: Callable[[str], Awaitable[None]] | None,
    ) -> list[LLMResult]:
        request = self._request(settings, deployment, messages, kwargs)
        budgets = active_budgets()
        if settings.budget is not None:
            budgets = (*budgets, settings.budget)
        # Budgets first: a call they refuse takes nothing from the rate limits and sends nothing.
        with off_the_attempt_clock():  # waiting for our own budgets is not the provider's time
            holds = await self._reserve_budgets(budgets, deployment, request) if budgets else None
        bill: Bill | None = None
        limits: CallLimits = NO_LIMITS
        try:
            if notify is not None:
                request["stream"] = True
                request.setdefault("stream_options", {"include_usage": True})  # usage is what we bill by
            # A deployment of this model's own chain has its route; another (acompletion(spec=...)) goes
            # through litellm rather than opening a connection pool for one request.
            route = self._routes.get(id(deployment), LITELLM_ROUTE)
            transport, prepared = route.pick(deployment, request)
            started = 0.0
            before_send: BeforeSend | None = None
            if (
                settings.request_limit
                or settings.rate_limit
                or settings.max_concurrency
                or _rate_limiter().GLOBAL_LIMITER.rate_config
            ):

                async def before_send() -> CallLimits:
                    # The transport's hook, awaited once the body is ready, right before it is written.
                    # A limiter failure here (Redis down, a timeout) is ours, not the provider's: no retry.
                    nonlocal limits, started
                    with off_the_attempt_clock():  # nor is queueing for our own rate limiter
                        limits = await reserve_call(settings, deployment, request)
                    started = time.perf_counter()  # the limiter's wait is not the provider's time
                    return limits  # the transport recounts it from a late write, or hands it back

            started = time.perf_counter()
            try:
                if deployment.responses_api:  # litellm's Responses API, whichever the route
                    completion, first_token = await self._respond(
                        request, messages, notify, before_send, route.litellm.max_connections
                    )
                elif notify is None:
                    completion = await transport.complete(deployment, prepared, before_send)
                    first_token = None
                else:
                    completion, first_token = await self._stream(
                        transport, deployment, prepared, notify, before_send
                    )
                finished = time.perf_counter()
                bill = bill_completion(completion, deployment.model, messages)  # never raises
                # Tracked first, before anything that can fail (settling, parsing): a paid call is billed.
                await GLOBAL_COST_TRACKER.arecord(
                    deployment.name,
                    bill.usage,
                    bill.cost.usd,
                    priced=bill.cost.priced,
                    latency_s=finished - started,
                )
                telemetry.note_response_model(completion.response_model)
            except BaseException as exc:
                if isinstance(exc, Exception) and bill is None and is_provider_error(exc):
                    # failed attempts too, for error reports
                    GLOBAL_COST_TRACKER.record_failure(deployment.name, exc, time.perf_counter() - started)
                if limits is not NO_LIMITS:  # failed or cancelled: no tokens billed, none left charged
                    await limits.failed()
                raise
        except BaseException:
            if holds is not None:  # the bill if there was one (a settle failed after it), else nothing
                await settle_budgets(holds, 0.0 if bill is None else bill.cost.usd, deployment.name)
            raise
        # The answer is paid for (and tracked): settle the budgets, then the rate limits (which never
        # raises, so a limiter in trouble can neither lose this bill nor send the request again); both
        # before the results are built: a paid answer that fails to parse still counts.
        if holds is not None:
            await settle_budgets(holds, bill.cost.usd, deployment.name)
        if limits is not NO_LIMITS:
            await limits.settle(bill.usage.total_tokens, bill.usage.completion_tokens)
        results, _, _ = build_results(
            completion,
            name=deployment.name,
            requested_model=deployment.model,
            prompt=messages,
            started=started,
            first_token=first_token,
            finished=finished,
            bill=bill,
        )
        if deployment.responses_api:  # fhlmi: no refusal check, tool_parser or validator here
            responses.stamp_results(results, completion.response_id)
            return results
        refuse_content_filter(deployment.name, results, completion if notify is None else None)
        if self.tool_parser is not None:
            apply_tool_parser(self.tool_parser, results, completion.choices, kwargs.get("tools"))
        if settings.response_validator is not None:
            await validate_responses(settings.response_validator, results)
        return results

    async def select_tool(self, *selection_args: Any, **selection_kwargs: Any) -> Any:
        """aviary's ``ToolSelector`` on the primary model: ``(messages, tools, tool_choice)`` → a
        ``ToolRequestMessage``. One request, no retries; its cost is tracked like any call's."""
        primary = self._settings.deployments[self._settings.primary]

        async def acompletion(*args: Any, **kwargs: Any) -> Any:
            if args:  # aviary passes the model name positionally
                kwargs.setdefault("model", args[0])
            request = {**primary.params, **kwargs, "model": primary.model}
            response = await litellm().acompletion(**request)
            if cost_tracking_enabled():
                await GLOBAL_COST_TRACKER.record(response)
            return response

        selector = aviary_core().ToolSelector(model_name=primary.model, acompletion=acompletion)
        return await selector(*selection_args, **selection_kwargs)

    @staticmethod
    async def _reserve_budgets(
        budgets: tuple[Budget, ...], deployment: Deployment, request: dict[str, Any]
    ) -> Holds:
        from lmi.cost.estimate import worst_case_chat_usd

        worst = worst_case_chat_usd(deployment.model, request)
        with telemetry.waiting("budget", model=deployment.name):
            return await reserve_all(budgets, worst, f"A call to {deployment.name}")

    @staticmethod
    async def _respond(
        request: dict[str, Any],
        messages: list[Message],
        notify: Callable[[str], Awaitable[None]] | None,
        before_send: BeforeSend | None,
        max_connections: int,
    ) -> tuple[Completion, float | None]:
        """One Responses API request (streamed when there are callbacks); its answer as a Completion.
        Charged like a chat request through litellm: right before it is written, where litellm takes our
        client (see :mod:`lmi.llms.transports.litellm_clients`)."""
        from lmi.llms.transports.litellm_clients import send_charged

        request = responses.build_request(request, messages, stream=notify is not None)
        answer = await send_charged(litellm().aresponses, request, "responses", before_send, max_connections)
        if notify is None:
            return responses.completion_of(answer), None
        first: list[float] = []

        async def timed(delta: str) -> None:
            if not first:
                first.append(time.perf_counter())
            await notify(delta)

        final, _ = await responses.consume_stream(answer, timed)
        return responses.completion_of(final), (first[0] if first else None)

    @staticmethod
    async def _stream(
        transport: Transport,
        deployment: Deployment,
        prepared: Any,
        notify: Callable[[str], Awaitable[None]],
        before_send: BeforeSend | None,
    ) -> tuple[Completion, float | None]:
        first_text: float | None = None

        async def on_text(delta: str) -> None:
            nonlocal first_text
            if first_text is None:
                first_text = time.perf_counter()
            await notify(delta)

        # A failure after text reached the callbacks is final: the retry layer sees notify.delivered().
        completion = await transport.stream(deployment, prepared, on_text, before_send)
        # The first token is the first delta of anything (a tool call, reasoning), when the codec knows it.
        first = completion.first_delta_at
        return completion, first if first is not None else first_text

    def _deployment_for(self, spec: ModelSpec) -> Deployment:
        """The chain's own deployment when ``spec`` describes one (its route kept), else a new one."""
        wanted = deployment_of(spec, self._settings.chain[0].transport)
        for deployment in self._settings.deployments.values():
            if deployment.name == wanted.name and deployment.params == wanted.params:
                return deployment
        return wanted

    def completions_requested(self, kwargs: Mapping[str, Any]) -> int:
        return self._settings.completions_requested(kwargs)

    def _run(
        self,
        messages: list[Message],
        kwargs: dict[str, Any],
        notify: TextNotifier | None,
    ) -> Coroutine[Any, Any, list[LLMResult]]:
        # Plain functions and a partial, not coroutines: fewer frames for every resumption of the call.
        settings = self._settings
        total_timeout = kwargs.pop("total_timeout", settings.retry.total_timeout)
        spec = kwargs.pop("spec", None)
        if spec is not None:  # fhlmi's acompletion(..., spec=): one request to that model, no retries
            return self._attempt(settings, self._deployment_for(spec), messages, kwargs, notify)
        attempt = partial(self._attempt, settings, messages=messages, kwargs=kwargs, notify=notify)
        return with_retries_and_fallbacks(
            settings.chain,
            settings.retry,
            attempt,
            attempt_timeout=partial(settings.attempt_timeout, kwargs=kwargs),
            total_timeout=total_timeout,
            delivered=None if notify is None else notify.delivered,
        )

    async def call_batch(self, prompts: Sequence[Any], **kwargs: Any) -> list[LLMResult | Exception]:
        """Answer every prompt through the provider's batch API (half price, minutes to hours).

        Each prompt is a string, a list of messages, or a dict with ``messages`` and per-item parameters.
        Results come back in input order; an item that failed is its exception (``BatchItemError``) in
        place. The job is persisted, so the same call in a restarted process collects it instead of
        submitting again. ``output_type``, ``tools`` and request parameters work as in :meth:`call`.
        """
        from lmi.batch import call_batch

        return await call_batch(self, prompts, **kwargs)

    async def acompletion(self, messages: list[Message], **kwargs: Any) -> list[LLMResult]:
        return await self._run(messages, kwargs, None)

    async def acompletion_iter(
        self, messages: list[Message], callbacks: list[TextCallback] | None = None, **kwargs: Any
    ) -> AsyncIterator[LLMResult]:
        if callbacks:
            self.refuse_n_with_callbacks(kwargs)
        for result in await self._run(messages, kwargs, TextNotifier(callbacks or ())):
            yield result
