"""API keys never show: not in logs (lmi's and litellm's, at DEBUG), printed output, errors and their
causes, tracebacks, nor the repr of models and results.

A distinctive fake key is set as ``api_key`` in the config; the test first proves the key really went
out (the replay server received it), then searches everything a user could see for any 8 characters
of its secret part.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping

import pytest
from aviary.core import Message

from lmi import LiteLLMModel, LLMResult, ModelCallError
from lmi.rate_limiter import GlobalRateLimiter
from tests.rate_limiter.conftest import free_port
from tests.replay import Fault, ReplayServer

SECRET = "Q7x9R2m4T8v1W5k3Zp6Y"
API_KEY = f"sk-lmi-fake-{SECRET}"
MIXED = "mixed-chat-d72d1e"  # a real 401 from OpenAI (its message masks the key), then Anthropic's answer
STREAM = "openai-chat-stream-29f559"
LOGGERS = ("", "lmi", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore", "openai", "aiohttp")
QUESTION = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]


def _leaks(text: str) -> list[str]:
    """Every 8-character piece of the secret found in ``text``."""
    return sorted({SECRET[i : i + 8] for i in range(len(SECRET) - 7) if SECRET[i : i + 8] in text})


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, its causes and contexts, and for ModelCallError every attempt's error, each once."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, ModelCallError):
            pending.extend(e for _, e in current.attempts)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def _shown(error: BaseException) -> str:
    parts = ["".join(traceback.format_exception(error))]
    for link in _chain(error):
        parts += [str(link), repr(link)]
    return "\n".join(parts)


def _config(
    replay: ReplayServer, primary_base: str | None = None, transport: str = "auto", **router: object
) -> dict[str, object]:
    return {
        "transport": transport,
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "gpt-4o-mini",
                    "api_base": primary_base or replay.openai_base(MIXED),
                    "api_key": API_KEY,
                },
            },
            {
                "model_name": "claude-haiku",
                "litellm_params": {
                    "model": "claude-haiku-4-5-20251001",
                    "api_base": replay.anthropic_base(MIXED),
                    "api_key": API_KEY,
                    "max_tokens": 56,
                },
            },
        ],
        "fallbacks": [{"gpt-4o-mini": ["claude-haiku"]}],
        "router_kwargs": {"retry_backoff": 0.01, "num_retries": 1, **router},
    }


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger that could see a request, at DEBUG, captured."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_api_keys_never_show(
    replay: ReplayServer,
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    transport: str,
) -> None:
    shown: dict[str, str] = {}
    llm = LiteLLMModel(name="gpt-4o-mini", config=_config(replay, transport=transport))

    # The recorded 401 from OpenAI, then the fallback's answer.
    result = await llm.call_single(QUESTION)
    assert result.model == "claude-haiku"
    sent = replay.requests_for(MIXED)
    assert _header(sent[0].headers, "authorization") == f"Bearer {API_KEY}"  # the key really was used
    assert _header(sent[1].headers, "x-api-key") == API_KEY
    shown["result"] = f"{result!r}\n{result!s}\n{result.model_dump_json()}"
    shown["model"] = f"{llm!r}\n{llm!s}"

    # Injected errors: 401 then 500s on every model.
    replay.inject(MIXED, Fault(status=401, times=1))
    replay.inject(MIXED, Fault(status=500, body='{"error": {"message": "injected"}}', times=None))
    with pytest.raises(ModelCallError) as server_errors:
        await llm.call_single(QUESTION)
    shown["5xx error"] = _shown(server_errors.value)
    replay.clear()

    # Every model times out.
    replay.inject(MIXED, Fault(delay=1.0, replay=True, times=None))
    with pytest.raises(ModelCallError) as timeouts:
        await LiteLLMModel(
            name="gpt-4o-mini", config=_config(replay, transport=transport, timeout=0.2)
        ).call_single(QUESTION)
    shown["timeout error"] = _shown(timeouts.value)
    replay.clear()

    # Connection refused on the primary, then the fallback answers.
    refused = LiteLLMModel(
        name="gpt-4o-mini", config=_config(replay, f"http://127.0.0.1:{free_port()}/v1", transport)
    )
    shown["after refused"] = repr(await refused.call_single(QUESTION))

    # A stream cut after text.
    replay.inject(STREAM, Fault(cut_after_events=4))
    streaming_config = _config(replay, replay.openai_base(STREAM), transport)
    with pytest.raises(ModelCallError) as cut:
        await LiteLLMModel(name="gpt-4o-mini", config=streaming_config).call_single(
            "Say hello", callbacks=[lambda _: None]
        )
    shown["stream error"] = _shown(cut.value)

    out, err = capfd.readouterr()
    shown["stdout"], shown["stderr"] = out, err
    shown["logs"] = debug_logs.text
    if transport == "litellm":
        assert "POST" in debug_logs.text  # litellm's request logging was on and captured
    assert any("moving on" in record.getMessage() for record in debug_logs.records)  # and lmi's
    leaks = {where: _leaks(text) for where, text in shown.items() if _leaks(text)}
    assert leaks == {}


async def test_redis_password_never_shows_in_logs(debug_logs: pytest.LogCaptureFixture) -> None:
    limiter = GlobalRateLimiter(
        rate_config={("client", "secrets"): "5/second"},
        redis_url=f"redis://lmi:{SECRET}@127.0.0.1:{free_port()}/0",
        fallback_to_memory=True,
    )
    await limiter.try_acquire(("client", "secrets"))  # Redis is unreachable: a warning, then memory
    assert any("cannot use Redis" in record.getMessage() for record in debug_logs.records)
    assert _leaks(debug_logs.text) == []


def test_redis_password_never_shows_in_the_limiter_repr() -> None:
    limiter = GlobalRateLimiter(redis_url=f"redis://lmi:{SECRET}@127.0.0.1:{free_port()}/0")
    assert _leaks(repr(limiter) + str(limiter)) == []


def test_model_settings_repr_hides_the_key(replay: ReplayServer) -> None:
    llm = LiteLLMModel(name="gpt-4o-mini", config=_config(replay))
    assert _leaks(repr(llm.settings) + str(llm.settings)) == []


def test_results_repr_hides_nothing_it_should_not_hold() -> None:
    result = LLMResult(model="gpt-4o-mini", text="Existence.")
    assert _leaks(repr(result) + str(result) + result.model_dump_json()) == []
