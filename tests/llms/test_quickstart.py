"""The README's quick start, as written, against a recorded exchange.

The only change from the README is where the default model's requests go (``OPENAI_API_BASE``, which
litellm reads) and the question, which must be one that was recorded.
"""

from __future__ import annotations

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
    assert replay.requests_for("openai-chat-ea3a00")[0].body["model"] == "gpt-4o-mini"


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
