"""The limits one LLM call takes before its request is sent, and settles once the bill is known.

A call reserves, in this order and each only when configured: an in-flight slot (``max_concurrency``,
key ``("client|concurrency", model)``, held until the call settles),
one request unit (``("client|request", model)``), then its tokens (``("client", model)``: the prompt, images
by the provider's formula, plus the expected completion, see :mod:`lmi.llms.token_estimate`). If a later
step fails or is cancelled, the earlier ones are handed back: nothing is charged for a call never made.

Transports call :func:`reserve_call` immediately before writing the request (``LiteLLMModel`` passes
it to them as their ``before_send`` hook, which returns the :class:`CallLimits`; a transport that knows
when its connection is ready calls :meth:`CallLimits.count_from_now` if that was well after the grant,
and :meth:`CallLimits.cancel` if the request never reached the server), then exactly one of
:meth:`CallLimits.settle` (a response and its bill), :meth:`CallLimits.failed` (the request went out, no
bill) or :meth:`CallLimits.cancel` (it never went out; after a transport's cancel the others do
nothing). None of these three raises: the answer is paid
for, so a limiter in trouble after the call is logged, never turned into an error that would send the
request again; and they finish even when the caller is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from lmi import telemetry
from lmi.llms.retry import off_the_attempt_clock
from lmi.llms.token_estimate import CompletionHistory, estimate_request_tokens

if TYPE_CHECKING:
    from lmi.llms.config import Deployment, ModelSettings
    from lmi.rate_limiter import GlobalRateLimiter
    from lmi.rate_limiter.concurrency import ConcurrencySlot
    from lmi.rate_limiter.reservation import Reservation

logger = logging.getLogger(__name__)

COMPLETIONS = CompletionHistory()
# Seconds a request may take from leaving the limiter to reaching the provider (litellm builds and sends
# it meanwhile): the limits count it from then, so they hold where the provider counts.
REQUEST_LATENCY = 0.05
_finishing: set[asyncio.Task[None]] = set()  # settlements that outlive a cancelled caller


def _limiter() -> GlobalRateLimiter:
    from lmi.rate_limiter import GLOBAL_LIMITER  # read on each call: tests and users may replace it

    return GLOBAL_LIMITER


class CallLimits:
    """What one call holds in the limiter between :func:`reserve_call` and its settlement."""

    __slots__ = ("choices", "model", "requests", "slot", "tokens")

    def __init__(
        self,
        model: str,
        requests: Reservation | None,
        tokens: Reservation | None,
        choices: int,
        slot: ConcurrencySlot | None = None,
    ) -> None:
        self.model = model
        self.requests = requests
        self.tokens = tokens
        self.choices = choices
        self.slot = slot

    async def settle(self, billed_tokens: int, completion_tokens: int) -> None:
        """The provider answered and billed ``billed_tokens`` (``completion_tokens`` of them completion)."""
        COMPLETIONS.record(self.model, -(-completion_tokens // max(self.choices, 1)))
        if self.tokens is not None:
            await finish_settlement(self.tokens.settle(billed_tokens), self.model)
        await self._free_slot()

    async def failed(self) -> None:
        """The request went out but nothing was billed: its request unit stays, its tokens go back."""
        if self.tokens is not None:
            await finish_settlement(self.tokens.cancel(), self.model)
        await self._free_slot()

    async def count_from_now(self) -> None:
        """The request leaves later than its grant (its connection took a while to open): its request
        unit and tokens count from now, where the provider counts them (waiting, rarely, for room)."""
        with off_the_attempt_clock():  # a wait for our own limiter is not the provider's time
            for reservation in (self.requests, self.tokens):
                if reservation is not None:
                    await reservation.count_from_now()

    async def cancel(self) -> None:
        """The request never went out: everything goes back."""
        for reservation in (self.tokens, self.requests):
            if reservation is not None:
                await finish_settlement(reservation.cancel(), self.model)
        await self._free_slot()

    async def _free_slot(self) -> None:
        if self.slot is not None:
            await finish_settlement(self.slot.release(), self.model)


NO_LIMITS = CallLimits("", None, None, 1)


async def finish_settlement(operation: Coroutine[Any, Any, None], model: str) -> None:
    """Run a settlement to its end even if the caller is cancelled; log (never raise) its failure."""

    async def logged() -> None:
        try:
            await operation
        except Exception as exc:
            logger.warning("Could not settle the rate limits of a call to %s: %s", model, exc)

    task = asyncio.ensure_future(logged())
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    await asyncio.shield(task)


async def reserve_call(
    settings: ModelSettings, deployment: Deployment, request: dict[str, Any]
) -> CallLimits:
    """Reserve the limits configured for ``deployment`` (see the module docstring).

    Raises what the limiter raises (``RateLimitTimeout``, ``RedisUnavailableError``), after handing back
    whatever it had reserved.
    """
    limiter = _limiter()
    name = deployment.name
    request_key, token_key = ("client|request", name), ("client", name)
    request_limit = settings.request_limit.get(name)
    token_limit = settings.rate_limit.get(name)
    concurrency = settings.max_concurrency.get(name)
    limits_requests = request_limit is not None or request_key in limiter.rate_config
    limits_tokens = token_limit is not None or token_key in limiter.rate_config
    if not (limits_requests or limits_tokens or concurrency):
        return NO_LIMITS
    slot = None
    if concurrency:
        slot = limiter.concurrency(("client|concurrency", name), concurrency)
        with telemetry.waiting("rate_limit", rate_limit_key=f"client|concurrency|{name}", weight=1):
            await slot.acquire()
    requests = tokens = None
    try:
        if limits_requests:
            with telemetry.waiting("rate_limit", rate_limit_key="|".join(request_key), weight=1):
                requests = await limiter.reserve(
                    request_key, rate_limit=request_limit, latency=REQUEST_LATENCY
                )
        if limits_tokens:
            estimate = estimate_request_tokens(request, deployment.model, COMPLETIONS, name)
            cap = limiter.limit_for(token_key, token_limit)
            if cap is not None:
                estimate = min(estimate, cap)  # a bigger call may still fit; the settle counts the rest
            with telemetry.waiting("rate_limit", rate_limit_key="|".join(token_key), weight=estimate):
                tokens = await limiter.reserve(
                    token_key, rate_limit=token_limit, weight=estimate, latency=REQUEST_LATENCY
                )
    except BaseException:
        await CallLimits(name, requests, None, 1, slot).cancel()
        raise
    choices = request.get("n") or 1
    return CallLimits(name, requests, tokens, choices if isinstance(choices, int) else 1, slot)
