"""A process killed while polling, started again, collects its batch without submitting a second one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lmi import LiteLLMModel
from tests.batch.servers import BatchServer
from tests.replay import load_recording

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from lmi import LiteLLMModel
    llm = LiteLLMModel(name="gpt-4o-mini", config={
        "model_list": [{"model_name": "gpt-4o-mini",
                        "litellm_params": {"model": "gpt-4o-mini", "api_base": sys.argv[1]}}],
        "batch_poll_interval": 0.05, "batch_dir": sys.argv[2]})
    asyncio.run(llm.call_batch(["Say hello", "What does 42 mean?"], max_poll_interval=0.05))
    """
)


def polls(server: BatchServer) -> int:
    return sum(1 for method, path in server.log if method == "GET" and path.startswith("/v1/batches/"))


async def test_killed_mid_poll_then_collected_once(batch_server: BatchServer, batch_dir: Path) -> None:
    batch_server.hold.set()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", CHILD, batch_server.openai_base, str(batch_dir)]
    child = subprocess.Popen(command, env=env)  # noqa: ASYNC220  (started once, then the server is watched)
    try:
        deadline = time.monotonic() + 60
        while polls(batch_server) < 3:  # submitted, and polling the batch in progress
            assert child.poll() is None, "the child ended early"
            assert time.monotonic() < deadline, "the child never polled"
            await asyncio.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert len(batch_server.created()) == 1

    batch_server.hold.clear()
    llm = LiteLLMModel(
        name="gpt-4o-mini",
        config={
            "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": {
                "model": "gpt-4o-mini", "api_base": batch_server.openai_base}}],
            "batch_poll_interval": 0.01,
        },
    )  # fmt: skip
    results = await llm.call_batch(["Say hello", "What does 42 mean?"], batch_dir=str(batch_dir))
    assert len(batch_server.created()) == 1  # collected, not submitted again
    assert sum(1 for m, p in batch_server.log if (m, p) == ("POST", "/v1/batches")) == 1
    expected = [
        json.loads(load_recording(name)[0]["response"])["choices"][0]["message"]["content"]
        for name in ("openai-chat-ea3a00", "openai-chat-887c4f")
    ]
    assert [r.text for r in results] == expected  # type: ignore[union-attr]
    from lmi.batch.store import BatchStore

    store = BatchStore(batch_dir)
    (job,) = store.jobs()
    items = store.items(job.job_id)
    assert store.count_answered(job.job_id) == sum(1 for i in items if i.kind not in (None, "expired")) == 2
