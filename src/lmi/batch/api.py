"""The public face of batches: ``call_batch`` and the functions behind ``lmi batch``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from lmi import telemetry
from lmi.batch.providers import PROVIDERS, BatchProvider
from lmi.batch.runner import (
    BatchRunner,
    Target,
    batch_target,
    build_items,
    job_id_for,
)
from lmi.batch.store import BatchStore, Item, Job
from lmi.batch.wire import anthropic_completion, openai_completion
from lmi.exceptions import BatchItemError, JSONSchemaValidationError
from lmi.llms.config import DEFAULT_MAX_CONNECTIONS
from lmi.llms.transports.session import session_for
from lmi.types import LLMResult

if TYPE_CHECKING:
    from lmi.llms.base import OutputType
    from lmi.llms.litellm_model import LiteLLMModel

BatchOutcome = LLMResult | Exception


@contextlib.asynccontextmanager
async def _provider(
    target: Target, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> AsyncIterator[BatchProvider]:
    """The provider's batch API on the loop's pooled session (the native transport's, closed with the
    loop): a batch shares keep-alive connections, proxies and TLS settings with the model's calls."""
    yield PROVIDERS[target.provider](target.base_url, target.api_key, await session_for(max_connections))


def _options(model: LiteLLMModel, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the batch's own options out of the call's kwargs (the rest are request parameters)."""
    config = model.config
    return {
        "poll_interval": kwargs.pop("poll_interval", config.get("batch_poll_interval")),
        "max_poll_interval": kwargs.pop("max_poll_interval", None),
        "max_requests": kwargs.pop("max_batch_requests", config.get("batch_max_requests")),
        "max_bytes": kwargs.pop("max_batch_bytes", config.get("batch_max_bytes")),
        "progress": kwargs.pop("progress", None),
    }


async def submit_batch(
    model: LiteLLMModel,
    prompts: Sequence[Any],
    *,
    output_type: OutputType | None = None,
    tools: list[Any] | None = None,
    tool_choice: Any = "required",
    batch_dir: str | None = None,
    **kwargs: Any,
) -> str:
    """Record the job and submit its batches; return the job id without waiting for the answers."""
    options = _options(model, kwargs)
    kwargs.pop("cache", None)
    store, job, target, _, _ = _prepare(model, prompts, output_type, tools, tool_choice, batch_dir, kwargs)
    async with _provider(target, model.settings.max_connections) as provider:
        runner = BatchRunner(store, job, provider, budgets=_budgets(model), **options)
        await runner.submit_pending()
        # Nobody in this process will collect: the reservations end here, and collecting charges the cost.
        for holds in runner.holds:
            await holds.release()
    return job.job_id


async def call_batch(
    model: LiteLLMModel,
    prompts: Sequence[Any],
    *,
    output_type: OutputType | None = None,
    tools: list[Any] | None = None,
    tool_choice: Any = "required",
    batch_dir: str | None = None,
    **kwargs: Any,
) -> list[BatchOutcome]:
    """Answer every prompt through the provider's batch API; results (or exceptions) in input order."""
    options = _options(model, kwargs)
    cache = _cache(model, kwargs.pop("cache", None))
    store, job, target, sent, keys = _prepare(
        model, prompts, output_type, tools, tool_choice, batch_dir, kwargs, keyed=cache is not None
    )

    async def run() -> tuple[list[BatchOutcome], list[LLMResult]]:
        cached = await _cached(cache, keys, sent, store, job)
        async with _provider(target, model.settings.max_connections) as provider:
            runner = BatchRunner(store, job, provider, budgets=_budgets(model), **options)
            items = await runner.run()
            name = model.settings.chain[0].name
            outcomes, fresh = results(store, job, name, items, sent, output_type, cached)
            await runner.settle_budgets(sum(result.cost for result in fresh))
        if cache is not None:  # what the batch answered, a later call (or batch) finds in the cache
            for item, outcome in zip(items, outcomes, strict=True):
                key = keys[item.idx]
                if key and item.kind == "succeeded" and isinstance(outcome, LLMResult):
                    await cache[0].store_results(key, [outcome])
        return outcomes, fresh

    return await _traced(job, target, run)


def _cache(model: LiteLLMModel, mode: Any) -> tuple[Any, bool] | None:
    """The model's response cache as ``call`` uses it, and whether to skip lookups ("refresh")."""
    if mode not in (None, True, False, "refresh"):
        raise ValueError(f"cache must be True, False or 'refresh', got {mode!r}")
    store = model.response_cache() if mode is not False else None
    if store is None:
        return None
    from lmi.cache import chat_cache

    return chat_cache(store), mode == "refresh"


async def _cached(
    cache: tuple[Any, bool] | None,
    keys: list[str | None],
    sent: list[list[Any]],
    store: BatchStore,
    job: Job,
) -> dict[int, LLMResult]:
    """Items the response cache already answers: kept out of the batch, answered from the cache."""
    if cache is None or cache[1]:
        return {}
    submitted = {item.idx for item in store.items(job.job_id) if item.batch_id not in (None, "cache")}
    hits: dict[int, LLMResult] = {}
    for index, key in enumerate(keys):
        if key is None or index in submitted:
            continue
        found = await cache[0].lookup(key, sent[index])
        if found:
            hits[index] = found[0]
    if hits:
        store.answer_from_cache(job.job_id, list(hits))
    return hits


def _budgets(model: LiteLLMModel) -> tuple[Any, ...]:
    """The budgets a batch counts against: every enclosing ``cost_tracking_ctx`` and the model's own."""
    from lmi.cost import active_budgets

    budgets = active_budgets()
    own = model.settings.budget
    return budgets if own is None else (*budgets, own)


async def _traced(
    job: Job,
    target: Target,
    run: Callable[[], Awaitable[tuple[list[BatchOutcome], list[LLMResult]]]],
) -> list[BatchOutcome]:
    """Run a whole job inside a ``batch {model}`` span (with its metrics) when telemetry is recorded.

    The span describes every answer the job holds; the metrics count only what this run tracked for the
    first time, so collecting a job again adds no tokens or cost to them.
    """
    with telemetry.traced_operation("batch", job.model, target.provider) as operation:
        if operation is None:
            return (await run())[0]
        operation.set({"lmi.batch.job_id": job.job_id, "lmi.batch.items": job.n_items})
        try:
            outcomes, fresh = await run()
        except BaseException as exc:
            operation.finish(error=exc)
            raise
        answered = [outcome for outcome in outcomes if isinstance(outcome, LLMResult)]
        operation.set(
            {
                **_totals(answered),
                "lmi.batch.succeeded": len(answered),
                "lmi.batch.failed": len(outcomes) - len(answered),
            }
        )
        new = _totals(fresh)
        operation.finish(
            input_tokens=new["gen_ai.usage.input_tokens"],
            output_tokens=new["gen_ai.usage.output_tokens"],
            cost=new["lmi.cost_usd"],
        )
        return outcomes


def _totals(answered: list[LLMResult]) -> dict[str, Any]:
    return {
        "gen_ai.usage.input_tokens": sum(result.prompt_count or 0 for result in answered),
        "gen_ai.usage.output_tokens": sum(result.completion_count or 0 for result in answered),
        "lmi.cost_usd": sum(result.cost for result in answered),
    }


def _prepare(
    model: LiteLLMModel,
    prompts: Sequence[Any],
    output_type: OutputType | None,
    tools: list[Any] | None,
    tool_choice: Any,
    batch_dir: str | None,
    kwargs: dict[str, Any],
    keyed: bool = False,
) -> tuple[BatchStore, Job, Target, list[list[Any]], list[str | None]]:
    if isinstance(prompts, str):
        raise TypeError("call_batch takes a list of prompts; wrap a single prompt in a list")
    if not prompts:
        raise ValueError("call_batch needs at least one prompt")
    deployment = model.settings.chain[0]
    target = batch_target(deployment)
    built = build_items(target, deployment, prompts, kwargs, output_type, tools, tool_choice)
    bodies = [body for _, body, _ in built]
    keys = [model._cache_key_or_none(sent, params) if keyed else None for sent, _, params in built]
    store = BatchStore(batch_dir or model.config.get("batch_dir"))
    job = Job(
        job_id=job_id_for(target, bodies),
        provider=target.provider,
        model=deployment.name,
        base_url=target.base_url,
        n_items=len(bodies),
        created_at=time.time(),
        state="running",
    )
    if store.create_job(job, [(f"item-{i}", body) for i, body in enumerate(bodies)]):
        too_long = _over_context(target.model, bodies)
        if too_long:
            store.refuse(job.job_id, too_long)
    else:
        job = store.job(job.job_id) or job  # the same job ran before: resume it
    return store, job, target, [sent for sent, _, _ in built], keys


def _over_context(model: str, bodies: list[dict[str, Any]]) -> dict[int, str]:
    """Items whose prompt cannot fit the model's context window: kept out of the batch, with the reason."""
    from lmi.cost import price_entry

    limit = (price_entry(model) or {}).get("max_input_tokens")
    if not isinstance(limit, int):
        return {}
    refused = {}
    for index, body in enumerate(bodies):
        text = json.dumps(body.get("messages"), ensure_ascii=False)
        if len(text.encode()) <= limit:  # a token is at least one byte: this prompt surely fits
            continue
        from lmi._tokenizer import cl100k

        tokens = len(cl100k().encode_ordinary(text))
        if tokens > limit:
            refused[index] = f"the prompt is about {tokens:,} tokens, over {model}'s context of {limit:,}"
    return refused


def results(
    store: BatchStore,
    job: Job,
    name: str,
    items: list[Item],
    prompts: list[list[Any]] | None = None,
    output_type: OutputType | None = None,
    cached: dict[int, LLMResult] | None = None,
) -> tuple[list[BatchOutcome], list[LLMResult]]:
    """One result or exception per item, and the results tracked now for the first time.

    Each item's cost is tracked (and counted by budgets and metrics) once, ever, however often the job is
    collected.
    """
    from lmi.cost import GLOBAL_COST_TRACKER
    from lmi.cost.batch_pricing import batch_usage_cost
    from lmi.llms.base import validate_output
    from lmi.llms.results import build_results, pricing_model

    decode = openai_completion if job.provider == "openai" else anthropic_completion
    outcomes: list[BatchOutcome] = []
    newly_tracked = []
    fresh: list[LLMResult] = []
    for item in items:
        if item.kind == "cached":
            hit = (cached or {}).get(item.idx)
            gone = "answered by the response cache, whose entry is gone: run it again with cache='refresh'"
            outcomes.append(
                hit if hit is not None else BatchItemError(item.idx, item.custom_id, "cached", gone)
            )
            continue
        if item.kind != "succeeded" or item.answer is None:
            reason = item.error or (item.kind or "no outcome")
            outcomes.append(BatchItemError(item.idx, item.custom_id, item.kind or "missing", reason))
            continue
        completion = decode(item.answer)
        prompt = prompts[item.idx] if prompts else None
        built, usage, _ = build_results(
            completion,
            name=name,
            requested_model=name,
            prompt=prompt,
            started=job.created_at,
            finished=time.time(),
        )
        batch_cost = batch_usage_cost(pricing_model(completion, item.body.get("model", name)), usage)
        cost = batch_cost or 0.0
        result = built[0].model_copy(update={"cost": cost, "priced": batch_cost is not None})
        if not item.tracked:
            GLOBAL_COST_TRACKER.record(name, usage, cost, tag="batch", priced=batch_cost is not None)
            newly_tracked.append(item.idx)
            fresh.append(result)
        if output_type is not None:
            try:
                validate_output(result, output_type)
            except JSONSchemaValidationError as exc:
                outcomes.append(exc)
                continue
        outcomes.append(result)
    if newly_tracked:
        store.mark_tracked(job.job_id, newly_tracked)
    return outcomes, fresh


async def collect_batch(job_id: str, *, batch_dir: str | None = None, **options: Any) -> list[BatchOutcome]:
    """Wait for a submitted job (by job or provider batch id) and return its results."""
    from lmi.cost import active_budgets

    store = BatchStore(batch_dir)
    job = _find(store, job_id)
    target = _target_of(job)

    async def run() -> tuple[list[BatchOutcome], list[LLMResult]]:
        async with _provider(target) as provider:
            runner = BatchRunner(store, job, provider, budgets=active_budgets(), **options)
            items = await runner.run()
            outcomes, fresh = results(store, job, job.model, items)
            await runner.settle_budgets(sum(result.cost for result in fresh))
        return outcomes, fresh

    return await _traced(job, target, run)


async def cancel_batch(job_id: str, *, batch_dir: str | None = None) -> list[str]:
    """Ask the provider to cancel every unfinished batch of a job; return their ids."""
    store = BatchStore(batch_dir)
    job = _find(store, job_id)
    cancelled = []
    async with _provider(_target_of(job)) as provider:
        for batch_id, state, _, _ in store.batches(job.job_id):
            if state != "collected":
                await provider.cancel(batch_id)
                cancelled.append(batch_id)
    store.set_job_state(job.job_id, "cancelling")
    return cancelled


def _find(store: BatchStore, job_id: str) -> Job:
    job = store.find_job(job_id)
    if job is None:
        raise KeyError(f"No batch job {job_id!r} in {store.path}")
    return job


def _target_of(job: Job) -> Target:
    from lmi.batch.providers import default_key

    return Target(job.provider, job.model, job.base_url, default_key(job.provider))


async def batch_status(job_id: str, *, batch_dir: str | None = None) -> tuple[Job, list[dict[str, Any]]]:
    """A job and its batches, each polled once (unless already collected): id, state, done, total."""
    store = BatchStore(batch_dir)
    job = _find(store, job_id)
    batches = []
    async with _provider(_target_of(job)) as provider:
        for batch_id, state, n_items, done in store.batches(job.job_id):
            if state != "collected":
                status = await provider.poll(batch_id)
                state, done = status.state, status.done
                if not status.finished:
                    store.update_batch(batch_id, state, done)
            batches.append({"batch_id": batch_id, "state": state, "done": done, "total": n_items})
    return job, batches
