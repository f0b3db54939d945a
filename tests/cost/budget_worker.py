"""Run in child processes by test_budget_redis.py: calls under one Redis-shared budget."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")

RECORDING = "openai-chat-0b8092"
PROMPT = "Please tell me a story"


def _model(api_base: str):  # type: ignore[no-untyped-def]
    from lmi import LiteLLMModel

    params = {"model": "gpt-4o-mini", "api_base": api_base, "max_tokens": 3}
    return LiteLLMModel(
        name="gpt-4o-mini", config={"model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}]}
    )


async def _calls(api_base: str, redis_url: str, key: str, budget: float, calls: int) -> list[float]:
    from lmi import BudgetExceeded, cost_tracking_ctx

    llm = _model(api_base)
    costs: list[float] = []

    async def one() -> None:
        with contextlib.suppress(BudgetExceeded):  # refused: nothing sent, nothing billed
            costs.append((await llm.call_single(PROMPT)).cost)

    with cost_tracking_ctx(budget_usd=budget, budget_key=key, redis_url=redis_url):
        await asyncio.gather(*(one() for _ in range(calls)))
    return costs


def run_calls(
    api_base: str, redis_url: str, key: str, budget: float, calls: int, start: Any, results: Any
) -> None:
    """Put the costs of the calls that ran (refused ones left out) on ``results``; every process
    imports first and waits at the ``start`` barrier, so that all of them call at once."""
    import lmi._lazy

    lmi._lazy.litellm()
    start.wait(timeout=120)
    results.put(asyncio.run(_calls(api_base, redis_url, key, budget, calls)))


async def _hold(api_base: str, redis_url: str, key: str, budget: float, lease: float) -> None:
    from lmi import cost_tracking_ctx

    with cost_tracking_ctx(budget_usd=budget, budget_key=key, redis_url=redis_url, lease_seconds=lease):
        await _model(api_base).call_single(PROMPT)  # the server holds the answer: killed while waiting


def hold_call(api_base: str, redis_url: str, key: str, budget: float, lease: float) -> None:
    asyncio.run(_hold(api_base, redis_url, key, budget, lease))
