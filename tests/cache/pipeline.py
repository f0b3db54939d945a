"""A 'research pipeline' for the crash test: N distinct prompts through a cached model, 32 at a time.

    python -m tests.cache.pipeline API_BASE CACHE_PATH COUNT OUTPUT_JSON

Prints the index of each prompt as its answer arrives, then writes every result to OUTPUT_JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")

from lmi import LiteLLMModel

CONCURRENCY = 32


def prompt(index: int) -> str:
    return f"Summarise document {index}."


async def main(api_base: str, cache: str, count: int) -> list[list[object]]:
    params = {"model": "gpt-4o-mini", "api_base": api_base}
    llm = LiteLLMModel(
        name="gpt-4o-mini",
        config={"model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}], "cache": cache},
    )
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> list[object]:
        async with semaphore:
            result = await llm.call_single(prompt(index))
        print(index, flush=True)
        usage = [result.prompt_count, result.completion_count]
        return [result.text, *usage, result.cost + result.cost_saved, result.cache_hit]

    return list(await asyncio.gather(*(one(index) for index in range(count))))


if __name__ == "__main__":
    answers = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    with open(sys.argv[4], "w") as file:
        json.dump(answers, file)
