"""The in-process cost tracker and the switch that turns it on, per process or per context.

Whether a call is tracked is decided where it is recorded: a context override set by
:func:`cost_tracking_ctx` (inherited by tasks created inside the block, invisible to others) wins;
otherwise the process-wide default set by :func:`enable_cost_tracking` applies. Before anyone sets it,
the default is off, unless a cost ledger is configured (recording into a ledger implies tracking).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from lmi import telemetry
from lmi.cost import ledger
from lmi.cost.budget import DEFAULT_LEASE_SECONDS, Budget, BudgetStatus
from lmi.cost.totals import ModelCost, format_cost_table
from lmi.types import TokenUsage

logger = logging.getLogger(__name__)

_context_override: ContextVar[bool | None] = ContextVar("lmi_cost_tracking", default=None)
_budgets: ContextVar[tuple[Budget, ...]] = ContextVar("lmi_cost_budgets", default=())  # innermost first
# (block, the override and budgets it replaced) for every block open in this context, innermost last
_saved: ContextVar[tuple[tuple[cost_tracking_ctx, bool | None, tuple[Budget, ...]], ...]] = ContextVar(
    "lmi_cost_saved", default=()
)
_process_default: bool | None = None  # None: never set, follow whether a ledger is configured


def cost_tracking_enabled() -> bool:
    """Whether a call finishing in the current context is recorded."""
    override = _context_override.get()
    if override is not None:
        return override
    if _process_default is not None:
        return _process_default
    return ledger.ledger_configured()


def active_budgets() -> tuple[Budget, ...]:
    """The budgets of every :func:`cost_tracking_ctx` block the current context is in, innermost first."""
    return _budgets.get()


def enable_cost_tracking(enabled: bool = True) -> None:
    """Turn tracking on or off for the whole process, including the current context.

    Blocks of :func:`cost_tracking_ctx` entered elsewhere keep their own setting until they exit.
    """
    global _process_default
    _process_default = enabled
    _context_override.set(None)  # the latest explicit call wins here, even inside a ctx block


class cost_tracking_ctx:  # lower case: used like the function it is in the API
    """``with cost_tracking_ctx(): ...`` (or ``async with``) tracks costs inside the block only.

    The setting follows the block across ``await``s and into tasks created inside it; concurrent tasks
    outside the block are unaffected. ``cost_tracking_ctx(False)`` silences tracking in the block. One
    instance may be entered by several tasks or threads at once: each restores its own context on exit.

    ``budget_usd`` caps what the calls made inside the block may spend together: each call reserves its
    worst case before anything is sent (``BudgetExceeded`` when it does not fit) and settles to its real
    cost after. With ``budget_key`` and Redis (``redis_url``, else env ``REDIS_URL``) the budget is shared
    by every process using that key; without Redis, by every block of that key in this process. Nested
    blocks' budgets all apply. ``lease_seconds``: how long a reservation outlives a killed process.
    """

    def __init__(
        self,
        enabled: bool = True,
        *,
        budget_usd: float | None = None,
        budget_key: str | None = None,
        redis_url: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.enabled = enabled
        if budget_usd is None and (budget_key is not None or redis_url is not None):
            raise ValueError("budget_key and redis_url need a budget_usd to hold calls to")
        self.budget = (
            None
            if budget_usd is None
            else Budget(budget_usd, key=budget_key, redis_url=redis_url, lease_seconds=lease_seconds)
        )

    async def status(self) -> BudgetStatus:
        """The block's budget now: limit, spent, reserved and left (ValueError without a budget)."""
        if self.budget is None:
            raise ValueError("this cost_tracking_ctx has no budget_usd")
        return await self.budget.status()

    def __enter__(self) -> cost_tracking_ctx:
        # What to restore is kept in the context itself, not on the instance, so that tasks sharing an
        # instance never restore each other's state.
        budgets = _budgets.get()
        _saved.set((*_saved.get(), (self, _context_override.get(), budgets)))
        _context_override.set(self.enabled)
        if self.budget is not None and self.budget not in budgets:  # re-entered: one budget, held once
            _budgets.set((self.budget, *budgets))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        saved = _saved.get()
        for depth in range(len(saved) - 1, -1, -1):
            if saved[depth][0] is self:
                break
        else:
            raise RuntimeError("cost_tracking_ctx exited in a context that did not enter it")
        _saved.set(saved[:depth])
        _context_override.set(saved[depth][1])
        _budgets.set(saved[depth][2])

    async def __aenter__(self) -> cost_tracking_ctx:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class _EnabledVar:
    """``CostTracker.enabled`` as fhlmi exposes it (a ``ContextVar[bool]``), over lmi's two switches.

    ``get()`` says whether tracking is on here; ``set(value)`` turns it on or off in this context and
    returns a token for ``reset``.
    """

    def get(self, default: bool | None = None) -> bool:
        return cost_tracking_enabled()

    def set(self, value: bool) -> Token[bool | None]:
        return _context_override.set(bool(value))

    def reset(self, token: Token[bool | None]) -> None:
        _context_override.reset(token)


@dataclass(frozen=True, slots=True)
class CostRecord:
    """One recorded call, as callbacks and the ledger see it.

    ``model`` and ``usage`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``) read like the
    litellm response fhlmi's callbacks receive; ``response`` is that response when one was recorded.
    """

    model: str
    usage: TokenUsage
    cost_usd: float
    tag: str | None = None
    priced: bool = True  # False: the price map does not know the model or something it billed
    cache_hit: bool = False
    saved_usd: float = 0.0  # on a cache hit: what the stored answer cost
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    pid: int = field(default_factory=os.getpid)
    latency_s: float | None = None  # request sent to last token received
    error: str | None = None  # the error's type, for a failed attempt (which costs nothing)
    trace_id: str | None = None  # of the call's OpenTelemetry span, in hex, when traces are recorded
    span_id: str | None = None
    response: Any = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        """Anything else a callback written for fhlmi reads (``choices``, ``id``, ...) comes from the
        litellm response, when one was recorded."""
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            response = object.__getattribute__(self, "response")
        except AttributeError:  # not set yet (e.g. while unpickling)
            raise AttributeError(name) from None
        if response is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(response, name)


CostCallback = Callable[[CostRecord], Awaitable[Any] | Any]


class CostTracker:
    """Totals of every tracked call in this process: overall, per model, and through callbacks.

    ``GLOBAL_COST_TRACKER`` also appends each record to the cost ledger when one is configured.
    """

    enabled = _EnabledVar()

    def __init__(self, *, use_ledger: bool = False) -> None:
        self.lifetime_cost_usd: float = 0.0
        self.last_report: float = 0.0  # lifetime cost when the total was last logged
        self.report_every_usd: float = 1.0
        self.by_model: dict[str, ModelCost] = {}
        self.use_ledger = use_ledger
        self._callbacks: list[CostCallback] = []
        self._lock = threading.Lock()
        self._pending: set[asyncio.Task[Any]] = set()  # keeps scheduled async callbacks alive

    def record(
        self,
        model: str | Any,
        usage: TokenUsage | None = None,
        cost: float | None = None,
        *,
        tag: str | None = None,
        priced: bool = True,
        latency_s: float | None = None,
    ) -> Any:
        """Add one call's usage and cost; does nothing where tracking is disabled.

        ``priced=False`` marks a call the price map could not fully price; the report counts them.
        ``latency_s`` (request sent to last token) goes to the ledger for ``lmi report``.
        Async callbacks are scheduled as tasks. fhlmi's form, ``await record(response)`` with a litellm
        response, is accepted too: it prices the response's usage and awaits the callbacks in order, and
        (as in fhlmi) records whether or not tracking is enabled: ``track_costs`` is what checks that.
        """
        if not isinstance(model, str):
            return self._record_response(model)
        added = self._add(model, usage or TokenUsage(), cost or 0.0, tag, priced, latency_s, None)
        if added is not None:
            entry, callbacks = added
            for callback in callbacks:
                self._run_callback(callback, entry)
        return None

    async def arecord(
        self,
        model: str,
        usage: TokenUsage,
        cost: float,
        *,
        tag: str | None = None,
        priced: bool = True,
        latency_s: float | None = None,
        response: Any = None,
    ) -> None:
        """:meth:`record`, then await each callback in order (their errors are logged, not raised)."""
        added = self._add(model, usage, cost, tag, priced, latency_s, response)
        if added is not None:
            await self._await_callbacks(*added)

    @staticmethod
    async def _await_callbacks(entry: CostRecord, callbacks: tuple[CostCallback, ...]) -> None:
        for callback in callbacks:
            try:
                result = callback(entry)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("Cost callback %r failed", callback)

    async def _record_response(self, response: Any) -> None:
        from lmi.cost.pricing import usage_cost
        from lmi.llms.results import usage_from_litellm

        raw_usage = getattr(response, "usage", None)
        if not raw_usage:
            return
        usage = usage_from_litellm(raw_usage) or TokenUsage()
        model = str(getattr(response, "model", None) or "unknown")
        try:
            cost = usage_cost(model, usage)
        except Exception as exc:
            logger.warning("Could not price a %s response: %s", model, exc)
            cost = 0.0
        # fhlmi's form records whatever the switch says: callers gate it (track_costs) when they need to.
        added = self._add(model, usage, cost, None, True, None, response, always=True)
        if added is not None:
            await self._await_callbacks(*added)

    def _add(
        self,
        model: str,
        usage: TokenUsage,
        cost: float,
        tag: str | None,
        priced: bool,
        latency_s: float | None,
        response: Any,
        *,
        always: bool = False,
    ) -> tuple[CostRecord, tuple[CostCallback, ...]] | None:
        """Add to the totals (where tracking is enabled, or ``always``); the record and callbacks to run,
        when there are any (or a ledger)."""
        if not (always or cost_tracking_enabled()):
            return None
        with self._lock:
            self.lifetime_cost_usd += cost
            totals = self.by_model.get(model)
            if totals is None:
                totals = self.by_model[model] = ModelCost()
            totals.add(usage, cost, priced)
            callbacks = tuple(self._callbacks)
            report = self.lifetime_cost_usd - self.last_report >= self.report_every_usd
            if report:
                self.last_report = self.lifetime_cost_usd
        if report:
            logger.info("Cumulative LLM cost: $%.4f", self.lifetime_cost_usd)
        if not (callbacks or self.use_ledger):
            return None
        ids = telemetry.call_ids() or (None, None)
        entry = CostRecord(
            model=model,
            usage=usage,
            cost_usd=cost,
            tag=tag,
            priced=priced,
            latency_s=latency_s,
            trace_id=ids[0],
            span_id=ids[1],
            response=response,
        )
        if self.use_ledger:
            ledger.append(entry)
        return entry, callbacks

    def set_reporting_threshold(self, threshold_usd: float) -> None:
        """Log the lifetime cost each time it grows by ``threshold_usd`` (default $1)."""
        self.report_every_usd = threshold_usd

    def record_failure(self, model: str, error: BaseException, latency_s: float | None = None) -> None:
        """Put a failed attempt in the ledger (no cost, no totals, no callbacks), where one is kept."""
        if not (self.use_ledger and cost_tracking_enabled()):
            return
        ids = telemetry.call_ids() or (None, None)
        entry = CostRecord(
            model=model,
            usage=TokenUsage(),
            cost_usd=0.0,
            latency_s=latency_s,
            error=type(error).__name__,
            trace_id=ids[0],
            span_id=ids[1],
        )
        ledger.append(entry)

    def record_cache_hit(self, model: str, saved_usd: float, *, tag: str | None = None) -> None:
        """Count a call answered by the response cache: nothing spent, ``saved_usd`` saved."""
        if not cost_tracking_enabled():
            return
        with self._lock:
            totals = self.by_model.get(model)
            if totals is None:
                totals = self.by_model[model] = ModelCost()
            totals.add_cache_hit(saved_usd)
            callbacks = tuple(self._callbacks)
        if not (callbacks or self.use_ledger):
            return
        entry = CostRecord(
            model=model, usage=TokenUsage(), cost_usd=0.0, tag=tag, cache_hit=True, saved_usd=saved_usd
        )
        if self.use_ledger:
            ledger.append(entry)
        for callback in callbacks:
            self._run_callback(callback, entry)

    @property
    def cache_saved_usd(self) -> float:
        """USD the response cache saved in this process (calls answered without a provider)."""
        with self._lock:
            return sum(totals.cache_saved_usd for totals in self.by_model.values())

    def add_callback(self, callback: CostCallback) -> None:
        """Call ``callback(record)`` after each record, in the order added.

        During an LLM or embedding call, async callbacks are awaited before the call returns.
        """
        with self._lock:
            self._callbacks.append(callback)

    def remove_callback(self, callback: CostCallback) -> None:
        with self._lock:
            self._callbacks.remove(callback)

    def reset(self) -> None:
        """Zero every total (callbacks stay registered)."""
        with self._lock:
            self.lifetime_cost_usd = 0.0
            self.by_model = {}

    def unpriced_calls(self) -> dict[str, int]:
        """Per model, how many tracked calls the price map could not fully price."""
        with self._lock:
            return {model: t.unpriced_calls for model, t in self.by_model.items() if t.unpriced_calls}

    def report(self) -> str:
        """A table of calls, tokens and USD per model, with a totals row; unpriced calls counted."""
        with self._lock:
            rows = {model: totals.copy() for model, totals in self.by_model.items()}
        return format_cost_table(rows)

    def _run_callback(self, callback: CostCallback, entry: CostRecord) -> None:
        try:
            result = callback(entry)
            if inspect.isawaitable(result):
                self._schedule(result)
        except Exception:
            logger.exception("Cost callback %r failed", callback)

    def _schedule(self, awaitable: Awaitable[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # recorded from synchronous code: no loop to hand the callback to
            asyncio.run(_logged(awaitable))
            return
        task = loop.create_task(_logged(awaitable))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


async def _logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("Async cost callback failed")


GLOBAL_COST_TRACKER = CostTracker(use_ledger=True)
