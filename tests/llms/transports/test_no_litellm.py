"""Native calls whose caller reads text never import aviary or litellm; reading messages still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[3]

_CALLS = """
import asyncio, sys
from tests.replay import ReplayServer
from lmi import LiteLLMModel

server = ReplayServer().start()

def model(name, base, **params):
    params = {"model": name, "api_base": base, **params}
    return LiteLLMModel(name=name, config={"model_list": [{"model_name": name, "litellm_params": params}]})

async def main():
    plain = model("gpt-4o-mini", server.openai_base("openai-chat-0b8092"), max_tokens=56)
    streamed = model("gpt-4o-mini", server.openai_base("openai-chat-stream-29f559"))
    claude = model("claude-haiku-4-5-20251001", server.anthropic_base("anthropic-messages-29fd16"))
    results = [
        await plain.call_single("hi"),
        await streamed.call_single([{"role": "user", "content": "hi"}], callbacks=[lambda _: None]),
        await claude.call_single("What does 42 mean?", temperature=1.0, max_tokens=56),
    ]
    assert all(r.text and r.cost > 0 and r.prompt_count > 0 for r in results), results
    print("heavy after calls:", sorted(m for m in ("litellm", "aviary", "openai") if m in sys.modules))
    message = results[0].messages[0]
    from aviary.core import Message
    print("messages are aviary:", type(message) is Message, message.role, message.content == results[0].text)
    print("prompt is aviary:", [type(m).__name__ for m in results[0].prompt], results[0].prompt[0].content)

asyncio.run(main())
"""


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_text_calls_import_neither_aviary_nor_litellm_and_messages_appear_when_read() -> None:
    out = _run(_CALLS)
    assert "heavy after calls: []" in out
    assert "messages are aviary: True assistant True" in out
    assert "prompt is aviary: ['Message'] hi" in out


_CHAT = """
import sys
from tests.replay import ReplayServer
from lmi.cli import main
server = ReplayServer().start()
base = server.openai_base("openai-chat-stream-3f244b")
code = main(["chat", "The duck says", "-s", "You are a helpful assistant.", "-t", "0", "--max-tokens", "56",
             "-m", "openai/gpt-4o-mini-2024-07-18", "--api-base", base])
print("\\nexit", code, "litellm" in sys.modules, "aviary" in sys.modules)
"""


def test_lmi_chat_streams_without_importing_litellm() -> None:
    out = _run(_CHAT)
    assert out.rstrip().endswith("exit 0 False False")
    assert len(out.splitlines()[0]) > 3  # the streamed answer
