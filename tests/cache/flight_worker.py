"""A process that makes N identical calls through a shared cache when told to go (stdin), for tests.

    python -m tests.cache.flight_worker API_BASE CACHE_URL CALLS [LOCK_MS]

Prints ``ready`` once everything is imported, waits for a line on stdin, makes the calls concurrently,
then prints one JSON line: the texts and how many were cache hits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")

from lmi import LiteLLMModel

# Plain messages: nothing here imports aviary (nor litellm), so a worker is ready in a fraction of a second.
PROMPT = [
    {"role": "system", "content": "Respond with single words."},
    {"role": "user", "content": "What is the meaning of the universe?"},
]


async def main(api_base: str, cache: str, calls: int) -> None:
    if len(sys.argv) > 4:  # a short lease, for the test where a leader dies
        import lmi.cache.redis

        lmi.cache.redis.LOCK_MS = int(sys.argv[4])
    params = {"model": "gpt-4o-mini", "api_base": api_base}
    llm = LiteLLMModel(
        name="gpt-4o-mini",
        config={"model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}], "cache": cache},
    )
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    results = await asyncio.gather(*(llm.call_single(PROMPT) for _ in range(calls)))
    texts = sorted({result.text or "" for result in results})
    print(json.dumps({"texts": texts, "hits": sum(result.cache_hit for result in results)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
