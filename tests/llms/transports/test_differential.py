"""Both transports give equal results for every recorded chat exchange, from equal request bodies.

Each recorded request is replayed through ``transport="litellm"`` and ``transport="native"`` against the
same loopback server; the ``LLMResult``s must be equal field by field (text, messages and tool calls,
every token count, finish reason, logprob, cost), streamed deltas identical, and the bodies the server
received equal except for the documented differences in ``BODY_DIFFERENCES``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.llms.transports.differential import (
    Case,
    anthropic_messages,
    cases,
    comparable,
    openai_messages,
    run,
)
from tests.replay import ReplayServer, load_recording

OPENAI_CASES = cases("/v1/chat/completions")
ANTHROPIC_CASES = cases("/v1/messages")

# Documented differences between the body litellm sends and the native one: key → why.
BODY_DIFFERENCES: dict[str, str] = {}


def message_ids(case: Case) -> set[str]:
    """The message ids Anthropic sent in the recording (JSON bodies, or streams' message_start)."""
    ids = set()
    for exchange in load_recording(case.recording):
        if exchange["content_type"].startswith("application/json"):
            ids.add(str(json.loads(exchange["response"]).get("id")))
        for line in exchange["response"].splitlines():
            if line.startswith("data:") and '"message_start"' in line:
                ids.add(str(json.loads(line[5:])["message"]["id"]))
    return ids


def _without(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in BODY_DIFFERENCES}


def test_every_recording_is_covered() -> None:
    assert len(OPENAI_CASES) >= 40
    assert len(ANTHROPIC_CASES) >= 18


@pytest.mark.parametrize("case", OPENAI_CASES, ids=str)
async def test_openai_chat_same_result_on_both_transports(replay: ReplayServer, case: Case) -> None:
    request = case.exchange["request"]
    messages = openai_messages(request["messages"])
    base = replay.openai_base(case.recording)
    model = f"openai/{request['model']}"

    ref, ref_deltas, ref_body, _ = await run(replay, case, "litellm", model, base, messages)
    got, got_deltas, got_body, _ = await run(replay, case, "native", model, base, messages)

    assert [comparable(r) for r in got] == [comparable(r) for r in ref]
    assert got_deltas == ref_deltas
    if case.streamed:
        assert got_deltas
        assert "".join(got_deltas) == got[0].text
    assert _without(got_body) == _without(ref_body)


@pytest.mark.parametrize("case", ANTHROPIC_CASES, ids=str)
async def test_anthropic_messages_same_result_on_both_transports(replay: ReplayServer, case: Case) -> None:
    request = case.exchange["request"]
    messages = anthropic_messages(request)
    base = replay.anthropic_base(case.recording)
    model = f"anthropic/{request['model']}"

    ref, ref_deltas, ref_body, ref_headers = await run(replay, case, "litellm", model, base, messages)
    got, got_deltas, got_body, got_headers = await run(replay, case, "native", model, base, messages)

    # litellm replaces Anthropic's message id with a random "chatcmpl-..." one; native keeps the real id.
    assert len(got) == 1
    assert got[0].provider_response_id in message_ids(case)
    expected = [{**comparable(r), "provider_response_id": None} for r in ref]
    assert [{**comparable(r), "provider_response_id": None} for r in got] == expected
    assert got_deltas == ref_deltas
    assert got_body == ref_body == request
    for header in ("anthropic-version", "x-api-key", "content-type"):
        assert got_headers[header] == ref_headers[header]


# Through litellm, a call under a rate limit goes out on the client lmi hands litellm (charged at the
# write); one without any limit on litellm's own. Both must send and answer alike.
@pytest.mark.parametrize("case", OPENAI_CASES + ANTHROPIC_CASES, ids=str)
async def test_litellm_on_lmis_client_gives_what_litellm_on_its_own_gives(
    replay: ReplayServer, case: Case
) -> None:
    request = case.exchange["request"]
    if case.path == "/v1/messages":
        messages, base, model = (
            anthropic_messages(request),
            replay.anthropic_base(case.recording),
            "anthropic",
        )
    else:
        messages, base, model = (
            openai_messages(request["messages"]),
            replay.openai_base(case.recording),
            "openai",
        )
    model = f"{model}/{request['model']}"
    limit = {"request_limit": {model: "10000 per 1 second"}}
    ref, ref_deltas, ref_body, ref_headers = await run(replay, case, "litellm", model, base, messages)
    got, got_deltas, got_body, got_headers = await run(
        replay, case, "litellm", model, base, messages, **limit
    )

    fresh = {"provider_response_id": None} if model.startswith("anthropic/") else {}  # litellm's random id
    assert [{**comparable(r), **fresh} for r in got] == [{**comparable(r), **fresh} for r in ref]
    assert got_deltas == ref_deltas
    assert got_body == ref_body
    for header in ("authorization", "x-api-key", "anthropic-version", "content-type", "user-agent"):
        assert got_headers.get(header) == ref_headers.get(header), header
