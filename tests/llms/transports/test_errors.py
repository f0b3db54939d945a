"""Failures on the native transport: litellm's exception classes, the same retry decisions, clear messages.

Each fault is injected on loopback and the same call made through both transports with retries allowed;
the server's request count is the independent record of how often each transport retried.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import litellm
import pytest

from lmi import LiteLLMModel, ModelCallError
from tests.replay import Fault, ReplayServer

ROOT = Path(__file__).parents[3]
OPENAI, ANTHROPIC = "openai-chat-0b8092", "anthropic-messages-29fd16"
OPENAI_STREAM, ANTHROPIC_STREAM = "openai-chat-stream-29f559", "anthropic-messages-stream-2a2f99"
RETRIES = 2


def _openai_error(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})


def _anthropic_error(message: str, kind: str = "api_error") -> str:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}})


def _model(replay: ReplayServer, recording: str, transport: str, **params: Any) -> LiteLLMModel:
    if recording.startswith("openai"):
        params = {"model": "openai/gpt-4o-mini", "api_base": replay.openai_base(recording), **params}
    else:
        params = {
            "model": "anthropic/claude-haiku-4-5-20251001",
            "api_base": replay.anthropic_base(recording),
        }
    config = {
        "model_list": [{"model_name": "primary", "litellm_params": params}],
        "transport": transport,
        "num_retries": RETRIES,
        "retry_backoff": 0.01,
        "timeout": 5,
    }
    return LiteLLMModel(name="primary", config=config)


async def _fail(
    replay: ReplayServer, recording: str, transport: str, fault: Fault, stream: bool = False
) -> tuple[list[BaseException], int]:
    """The exceptions of each attempt, and how many requests reached the server."""
    replay.clear()
    fault.times = None
    replay.inject(recording, fault)
    llm = _model(replay, recording, transport)
    callbacks = [lambda _: None] if stream else None
    try:
        async with asyncio.timeout(20):
            await llm.call_single("hi", callbacks=callbacks)
    except ModelCallError as exc:
        errors = [error for _, error in exc.attempts]
    except Exception as exc:  # a plain provider error (400, 422...) reaches the caller as itself, as in fhlmi
        errors = [exc]
    else:
        pytest.fail("the call succeeded")
    return errors, len(replay.requests_for(recording))


def _shape(exc: BaseException) -> tuple[str, str, Any]:
    return type(exc).__module__, type(exc).__name__, getattr(exc, "status_code", None)


STATUSES = [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("recording", [OPENAI, ANTHROPIC])
async def test_every_status_is_the_same_exception_and_retry_decision(
    replay: ReplayServer, recording: str, status: int
) -> None:
    body = _openai_error("boom") if recording == OPENAI else _anthropic_error("boom")
    ref, ref_sent = await _fail(replay, recording, "litellm", Fault(status=status, body=body))
    got, got_sent = await _fail(replay, recording, "native", Fault(status=status, body=body))
    assert [_shape(e) for e in got] == [_shape(e) for e in ref]
    assert got_sent == ref_sent
    assert "primary" in str(got[0])
    assert str(status) in str(got[0])
    assert "boom" in str(got[0])


BAD_ANSWERS = {
    "not-json": Fault(status=200, body="not json at all"),
    "truncated-json": Fault(status=200, body='{"id": "chatcmpl-1", "choices": ['),
    "html-error-page": Fault(
        status=502, body="<html><body>Bad gateway</body></html>", content_type="text/html"
    ),
    "html-200": Fault(status=200, body="<html><body>Sign in</body></html>", content_type="text/html"),
    "context-window": Fault(
        status=400, body=_openai_error("This model's maximum context length is 128000 tokens")
    ),
}


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=str)
@pytest.mark.parametrize("recording", [OPENAI, ANTHROPIC])
async def test_bad_answers_fail_as_litellm_fails(replay: ReplayServer, recording: str, case: str) -> None:
    fault = BAD_ANSWERS[case]
    ref, ref_sent = await _fail(replay, recording, "litellm", Fault(**vars(fault)))
    got, got_sent = await _fail(replay, recording, "native", Fault(**vars(fault)))
    assert [_shape(e) for e in got] == [_shape(e) for e in ref]
    assert got_sent == ref_sent
    message = str(got[0])
    assert "primary" in message
    assert str(fault.status) in message


@pytest.mark.parametrize("recording", [OPENAI, ANTHROPIC])
async def test_an_error_inside_a_200_is_raised_as_litellm_raises_it(
    replay: ReplayServer, recording: str
) -> None:
    body = _openai_error("boom") if recording == OPENAI else _anthropic_error("boom", "overloaded_error")
    ref, ref_sent = await _fail(replay, recording, "litellm", Fault(status=200, body=body))
    got, got_sent = await _fail(replay, recording, "native", Fault(status=200, body=body))
    assert [_shape(e) for e in got] == [_shape(e) for e in ref]
    assert got_sent == ref_sent
    assert "boom" in str(got[0])
    assert "primary" in str(got[0])


async def test_a_redirect_is_not_followed_and_names_its_target(replay: ReplayServer) -> None:
    fault = Fault(
        status=307, body="", content_type="text/plain", headers={"location": "http://127.0.0.1:9/v1"}
    )
    got, sent = await _fail(replay, OPENAI, "native", fault)
    assert sent == 1  # not retried: the same request would be redirected again
    assert isinstance(got[0], litellm.APIError)
    assert "307" in str(got[0])
    assert "http://127.0.0.1:9/v1" in str(got[0])
    assert "primary" in str(got[0])


async def test_wrong_content_type_with_a_completion_body_is_refused(replay: ReplayServer) -> None:
    body = json.loads(__import__("tests.llms.helpers", fromlist=["recorded"]).recorded(OPENAI)["response"])
    got, _ = await _fail(
        replay, OPENAI, "native", Fault(status=200, body=json.dumps(body), content_type="text/plain")
    )
    assert isinstance(got[0], litellm.InternalServerError)
    assert "content type 'text/plain'" in str(got[0])


@pytest.mark.parametrize("recording", [OPENAI_STREAM, ANTHROPIC_STREAM])
async def test_a_stream_cut_mid_event_is_a_connection_error_retried_as_litellm_retries(
    replay: ReplayServer, recording: str
) -> None:
    """The server sends one event and half of the next, then closes the connection cleanly."""
    from tests.llms.helpers import recorded

    stream = recorded(recording)["response"]
    first, second = stream.split("\n\n")[:2]
    cut = first + "\n\n" + second[: len(second) // 2]
    fault = Fault(status=200, body=cut, content_type="text/event-stream")
    got, sent = await _fail(replay, recording, "native", fault, stream=True)
    assert isinstance(got[0], litellm.APIConnectionError)
    assert "middle of" in str(got[0])
    assert sent == RETRIES + 1  # no text reached the callbacks yet, so it is retried


def test_a_failure_imports_litellm_a_success_does_not() -> None:
    script = """
import asyncio, sys
from tests.replay import Fault, ReplayServer
from lmi import LiteLLMModel
server = ReplayServer().start()
base = server.openai_base("openai-chat-0b8092")
params = {"model": "openai/gpt-4o-mini", "api_base": base, "max_tokens": 56}
config = {"model_list": [{"model_name": "m", "litellm_params": params}], "num_retries": 0}
llm = LiteLLMModel(name="m", config=config)
from lmi.llms.transports.native import NativeTransport
from lmi.llms.transports import openai as codec
from lmi.llms.config import Deployment
deployment = llm.settings.chain[0]
async def main():
    transport = NativeTransport(codec, 8)
    prepared = transport.prepare({**deployment.params, "messages": [{"role": "user", "content": "hi"}]})
    completion = await transport.complete(deployment, prepared)
    assert completion.choices[0].text
    print("litellm after success:", "litellm" in sys.modules)
    server.inject("openai-chat-0b8092", Fault(status=429, body="{}"))
    try:
        await transport.complete(deployment, prepared)
    except Exception as exc:
        import litellm
        print("after failure:", type(exc).__name__, isinstance(exc, litellm.RateLimitError))
asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "litellm after success: False" in done.stdout
    assert "after failure: RateLimitError True" in done.stdout
