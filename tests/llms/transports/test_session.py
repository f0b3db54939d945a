"""The pooled session: one per event loop, reused across calls, closed with its loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from lmi.llms.transports.session import session_for
from tests.llms.helpers import openai_model
from tests.replay import ReplayServer

ROOT = Path(__file__).parents[3]

_SCRIPT = """
import asyncio, gc, sys
from tests.replay import ReplayServer
from tests.llms.helpers import openai_model
from lmi.llms.transports.session import session_for

server = ReplayServer().start()
llm = openai_model(server, "openai-chat-0b8092", max_tokens=56)
seen = []

async def main():
    for _ in range(3):
        assert (await llm.call_single("hi")).text
    seen.append(await session_for(256))

asyncio.run(main())
asyncio.run(main())  # a second loop gets its own session
assert seen[0] is not seen[1] and seen[0].closed and seen[1].closed
del seen
gc.collect()
print("ok", len({r.headers.get("Host") for r in server.received}), flush=True)
"""


def test_sessions_close_with_their_loop_without_warnings() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "always", "PYTHONASYNCIODEBUG": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
    assert "unclosed" not in done.stderr.lower(), done.stderr


async def test_calls_on_one_loop_share_one_session_and_keep_connections_alive(replay: ReplayServer) -> None:
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=56)
    for _ in range(5):
        await llm.call_single("hi")
    session = await session_for(256)
    assert session is await session_for(256)
    # Five sequential calls, one TCP connection: the pool kept it alive.
    assert len(session.connector._conns) == 1 if session.connector else False  # type: ignore[attr-defined]
    await asyncio.sleep(0)


async def test_max_connections_bounds_the_requests_in_flight(replay: ReplayServer) -> None:
    """Six calls to a server that takes 0.3 s each, through a pool of two: they arrive two at a time."""
    from tests.replay import Fault

    replay.inject("openai-chat-0b8092", Fault(delay=0.3, replay=True, times=None))
    llm = openai_model(replay, "openai-chat-0b8092", max_tokens=56)
    llm = type(llm)(name=llm.name, config={**llm.config, "max_connections": 2})

    await asyncio.gather(*(llm.call_single("hi") for _ in range(6)))

    arrivals = sorted(r.at for r in replay.requests_for("openai-chat-0b8092"))
    assert len(arrivals) == 6
    # With at most two in flight, the third request can only start once the first has been answered.
    for earlier, later in zip(arrivals, arrivals[2:], strict=False):
        assert later - earlier >= 0.28
