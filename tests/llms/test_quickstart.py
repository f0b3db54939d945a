"""The README's quick start, as written, against a recorded exchange.

The only change from the README is where the default model's requests go (``OPENAI_API_BASE``, which
litellm reads) and the question, which must be one that was recorded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.llms.helpers import recorded
from tests.replay import ReplayServer


async def test_quick_start(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", replay.openai_base("openai-chat-ea3a00"))

    from aviary.core import Message

    from lmi import LiteLLMModel

    llm = LiteLLMModel()

    messages = [Message(content="Say hello")]

    completion = await llm.call_single(messages)
    assert completion.text == recorded("openai-chat-ea3a00")["body"]["choices"][0]["message"]["content"]
    assert completion.cost > 0
    # fhlmi's default model (CommonLLMNames.GPT_4O), so code written for it calls the same model
    assert replay.requests_for("openai-chat-ea3a00")[0].body["model"] == "gpt-4o-2024-11-20"


def test_readme_config_examples_construct() -> None:
    import os

    from lmi import LiteLLMModel

    config = {
        "model_list": [
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "api_key": os.getenv("OPENAI_API_KEY"),
                    "frequency_penalty": 1.5,
                    "top_p": 0.9,
                    "max_tokens": 512,
                    "temperature": 0.1,
                    "n": 5,
                },
            }
        ]
    }
    llm = LiteLLMModel(name="gpt-4o", config=config)
    assert llm.settings.n == 5
    assert llm.settings.deployments["gpt-4o"].model == "gpt-4o"

    llm = LiteLLMModel(config={"name": "gpt-4o", "temperature": 0.1, "max_tokens": 512, "n": 5})
    assert llm.name == "gpt-4o"

    llm = LiteLLMModel(name="gpt-4", config={"rate_limit": {"gpt-4": "100/minute"}})
    assert llm.settings.rate_limit == {"gpt-4": "100/minute"}


def test_quick_start_offline_prints_no_warning(replay: ReplayServer) -> None:
    """The README's quick start, run as a new user would, with no way to reach the internet.

    aviary imports litellm; before ``import lmi`` told litellm to read its bundled price map, that
    import fetched the map from GitHub, printing three warnings and sleeping between retries. Every
    address but loopback goes to a closed port, so a fetch fails fast and loudly here, online or not.
    """
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"## Quick start\s+```python\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    code = block.group(1).replace("What is the meaning of life?", "Say hello")
    # Top-level await, as in a notebook: run it as the body of a coroutine.
    script = (
        "import asyncio\n\nasync def main():\n" + textwrap.indent(code, "    ") + "\nasyncio.run(main())\n"
    )
    drop = ("LITELLM", "OPENAI", "HTTP", "NO_PROXY", "ALL_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    closed_port = "http://127.0.0.1:9"
    env |= {
        "OPENAI_API_BASE": replay.openai_base("openai-chat-ea3a00"),
        "OPENAI_API_KEY": "sk-test",
        "HTTPS_PROXY": closed_port,
        "HTTP_PROXY": closed_port,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    answer = recorded("openai-chat-ea3a00")["body"]["choices"][0]["message"]["content"]
    assert done.stdout.startswith(answer)
    assert len(replay.requests_for("openai-chat-ea3a00")) == 1
    assert elapsed < 20  # litellm's retries alone sleep several seconds; the run takes ~3 s loaded
