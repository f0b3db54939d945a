"""``call_batch``: many chat requests through a provider's batch API, at batch prices, resumable.

A job goes: build every item's request body → find the job in the store (same requests, same job id) or
record it → submit what has no batch yet, split by the provider's limits → poll each batch with backoff
→ store each finished batch's outcomes → resubmit items whose batch expired → build the results, track
their cost once, validate ``output_type``. Each step persists before the next, so a process killed at
any point and started again continues from the store without paying twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmi.batch.providers import DEFAULT_BASES, PROVIDERS, BatchAPIError, BatchProvider, default_key
from lmi.batch.store import BatchStore, Item, Job
from lmi.batch.wire import anthropic_body, openai_body
from lmi.exceptions import ConfigurationError

if TYPE_CHECKING:
    from lmi.cost import Budget, Holds
    from lmi.llms.base import OutputType
    from lmi.llms.config import Deployment

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 10.0  # seconds before the first poll; batches take minutes to hours
MAX_POLL_INTERVAL = 300.0
POLL_INTERVAL_ENV, MAX_POLL_INTERVAL_ENV = "LMI_BATCH_POLL_INTERVAL", "LMI_BATCH_MAX_POLL_INTERVAL"
POLL_BACKOFF = 1.5
MAX_RESUBMITS = 3  # an item whose batch expired is sent again at most this many times


@dataclass(frozen=True, slots=True)
class Target:
    """Where a job's batches go."""

    provider: str
    model: str  # as litellm names it (prefix included), for pricing
    base_url: str
    api_key: str | None


def _seconds(value: float | None, env: str, default: float) -> float:
    """A poll interval: given, else from the environment, else the default; positive and finite."""
    if value is None:
        raw = os.environ.get(env)
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ConfigurationError(f"{env}={raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ConfigurationError(f"a poll interval must be a positive number of seconds, got {value!r}")
    return value


def batch_target(deployment: Deployment) -> Target:
    """The batch API that serves ``deployment``, or a clear error for a provider without one here."""
    params = deployment.params
    model = deployment.model
    provider = params.get("custom_llm_provider") or _provider_of(model)
    if provider not in PROVIDERS:
        raise ConfigurationError(
            f"{deployment.name}: provider {provider!r} has no batch API in lmi "
            "(call_batch goes to OpenAI or Anthropic, or an OpenAI-compatible server as openai/<model>)"
        )
    base = params.get("api_base") or params.get("base_url") or DEFAULT_BASES[provider]
    return Target(provider, model, str(base).rstrip("/"), params.get("api_key") or default_key(provider))


def _provider_of(model: str) -> str:
    if "/" in model:
        return model.split("/", 1)[0]
    if model.startswith("claude"):
        return "anthropic"
    from lmi.cost import price_entry

    entry = price_entry(model) or {}
    return str(entry.get("litellm_provider") or "unknown")


def build_items(
    target: Target,
    deployment: Deployment,
    prompts: Sequence[Any],
    kwargs: Mapping[str, Any],
    output_type: OutputType | None,
    tools: list[Any] | None,
    tool_choice: Any,
) -> list[tuple[list[Any], dict[str, Any], dict[str, Any]]]:
    """``(prompt messages, request body, request parameters)`` per prompt, the body in the provider's
    wire format, the parameters as ``call`` would pass them (what the response cache keys on)."""
    from lmi.llms.base import normalize_messages, output_type_request, tools_request
    from lmi.llms.litellm_model import _message_dict as message_dict

    encode = openai_body if target.provider == "openai" else anthropic_body
    items = []
    for index, prompt in enumerate(prompts):
        params = {**deployment.params, **kwargs}
        if isinstance(prompt, Mapping):
            prompt = dict(prompt)
            messages = prompt.pop("messages", prompt.pop("prompt", None))
            if messages is None:
                raise ValueError(f"prompts[{index}] is a dict without 'messages' (or 'prompt')")
            if prompt.get("model", deployment.model) != deployment.model:
                raise ValueError(
                    f"prompts[{index}] asks for model {prompt['model']!r}; one batch goes to one model "
                    f"({deployment.model!r}): split it into one call_batch per model"
                )
            params.update(prompt)
        else:
            messages = prompt
        try:
            sent = normalize_messages(messages)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"prompts[{index}]: {exc}") from exc
        if output_type is not None:
            sent, extra = output_type_request(output_type, sent)
            params = {**extra, **params}
        if tools:
            params = {**tools_request(tools, tool_choice), **params}
        if params.get("n", 1) != 1:
            raise ValueError(
                f"call_batch returns one result per prompt: n={params['n']} is not possible, use n=1"
            )
        params.pop("n", None)
        try:
            body = encode(target.model, [message_dict(m) for m in sent], params)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"prompts[{index}]: {exc}") from exc
        items.append((sent, body, params))
    return items


def job_id_for(target: Target, bodies: Iterable[dict[str, Any]]) -> str:
    """The same requests to the same place always make the same job (so a rerun resumes it)."""
    digest = hashlib.sha256(json.dumps([target.provider, target.base_url], sort_keys=True).encode())
    for body in bodies:
        digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:24]


def split(items: list[Item], max_requests: int, max_bytes: int) -> list[list[Item]]:
    """Consecutive chunks within both of the provider's per-batch limits."""
    chunks: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item.body)) + 200  # the line's envelope: custom_id, method, url
        if item_size > max_bytes:
            raise ValueError(f"batch item {item.idx} is {item_size} bytes, over the limit of {max_bytes}")
        if current and (len(current) >= max_requests or size + item_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


class BatchRunner:
    """Drives one job to completion against one provider; every step is persisted in ``store``."""

    def __init__(
        self,
        store: BatchStore,
        job: Job,
        provider: BatchProvider,
        *,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        max_requests: int | None = None,
        max_bytes: int | None = None,
        progress: bool | None = None,
        budgets: tuple[Budget, ...] = (),
    ) -> None:
        self.store, self.job, self.provider = store, job, provider
        self.budgets = budgets
        self.holds: list[Holds] = []  # budget reservations of the batches this process submitted
        self.poll_interval = _seconds(poll_interval, POLL_INTERVAL_ENV, DEFAULT_POLL_INTERVAL)
        self.max_poll_interval = _seconds(max_poll_interval, MAX_POLL_INTERVAL_ENV, MAX_POLL_INTERVAL)
        self.max_requests = max_requests or provider.max_requests
        self.max_bytes = max_bytes or provider.max_bytes
        self.progress = sys.stderr.isatty() if progress is None else progress

    async def submit_pending(self) -> None:
        """Submit every item with no live batch: never sent, or sent in a batch that expired."""
        resend = [
            item
            for item in self.store.items(self.job.job_id)
            if item.batch_id is None or (item.kind == "expired" and item.attempts <= MAX_RESUBMITS)
        ]
        for chunk in split(resend, self.max_requests, self.max_bytes):
            holds = await self._reserve(chunk)
            try:
                batch_id = await self.provider.submit([(i.custom_id, i.body) for i in chunk], self.job.job_id)
            except BaseException:
                if holds is not None:
                    await holds.release()
                raise
            if holds is not None:
                self.holds.append(holds)
            self.store.record_batch(self.job.job_id, batch_id, [i.custom_id for i in chunk])
            logger.info("Submitted %s batch %s with %d items", self.provider.name, batch_id, len(chunk))

    async def _reserve(self, chunk: list[Item]) -> Holds | None:
        """Reserve the chunk's worst case at batch prices in every budget; BudgetExceeded before sending."""
        if not self.budgets:
            return None
        from lmi.cost import reserve_all
        from lmi.cost.batch_pricing import BATCH_DISCOUNT
        from lmi.cost.estimate import worst_case_chat_usd

        worst = sum(worst_case_chat_usd(item.body["model"], item.body) for item in chunk) * BATCH_DISCOUNT
        return await reserve_all(self.budgets, worst, f"A batch of {len(chunk)} items to {self.job.model}")

    async def settle_budgets(self, usd: float) -> None:
        """Charge the budgets what the newly collected items cost: against this process's reservations
        when it submitted them, else directly (a resumed job's reservations died with its process)."""
        if not self.budgets:
            return
        from lmi.cost import settle_budgets

        if self.holds:
            first, *rest = self.holds
            self.holds = []
            await settle_budgets(first, usd, self.job.model)
            for holds in rest:
                await holds.release()
        elif usd:
            for budget in self.budgets:
                await budget.settle(f"batch-{self.job.job_id}-{time.time_ns()}", usd)

    async def run(self) -> list[Item]:
        """Submit, poll and collect until every item has an outcome; return the items."""
        bar = self._bar()
        try:
            while True:
                await self.submit_pending()
                pending = [b for b in self.store.batches(self.job.job_id) if b[1] != "collected"]
                if not pending:
                    break
                await asyncio.gather(*(self._follow(batch_id, bar) for batch_id, *_ in pending))
        finally:
            if bar is not None:
                bar.close()
        self.store.set_job_state(self.job.job_id, "collected")
        return self.store.items(self.job.job_id)

    async def _follow(self, batch_id: str, bar: Any) -> None:
        """Poll ``batch_id`` until it finishes, then store its outcomes."""
        delay = self.poll_interval
        while True:
            try:
                status = await self.provider.poll(batch_id)
            except BatchAPIError as exc:
                if not exc.transient:
                    raise
                logger.warning("Polling %s failed (%s); trying again in %.0f s", batch_id, exc, delay)
            else:
                if not status.finished:
                    self.store.update_batch(batch_id, status.state, status.done)
                if bar is not None:
                    self._advance(bar)
                if status.finished:
                    await self._collect(status)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * POLL_BACKOFF, self.max_poll_interval)

    async def _collect(self, status: Any) -> None:
        ours = self.store.custom_ids(self.job.job_id, status.batch_id)
        outcomes = await self.provider.outcomes(status)
        rows = []
        for outcome in outcomes:
            if outcome.custom_id not in ours:
                logger.warning(
                    "Batch %s returned an unknown item %r; ignored", status.batch_id, outcome.custom_id
                )
                continue
            ours.discard(outcome.custom_id)
            rows.append((outcome.custom_id, outcome.kind, outcome.body, outcome.error))
        # Items the results left out: the batch's own fate is theirs.
        missing_kind = {"expired": "expired", "cancelled": "cancelled", "canceled": "cancelled"}.get(
            status.state, "errored"
        )
        reason = status.error or f"no result in the {status.state} batch {status.batch_id}"
        rows += [(cid, missing_kind, None, reason) for cid in sorted(ours)]
        self.store.record_outcomes(self.job.job_id, status.batch_id, rows)

    def _bar(self) -> Any:
        if not self.progress:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        done = sum(1 for i in self.store.items(self.job.job_id) if i.kind is not None)
        return tqdm(total=self.job.n_items, initial=done, desc=f"batch {self.job.job_id[:8]}", unit="item")

    def _advance(self, bar: Any) -> None:
        done = sum(d for _, state, _, d in self.store.batches(self.job.job_id) if state != "collected")
        done += self.store.count_answered(self.job.job_id)  # each poll: counted, not every body decoded
        bar.n = min(done, self.job.n_items)
        bar.refresh()
