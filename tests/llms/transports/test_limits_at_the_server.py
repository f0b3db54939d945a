"""The request limit as the provider sees it: counted where the request is written, handed back unsent.

Oracles outside lmi: a loopback server in its own process notes when each request arrives
(tests/reliability/load_server.py), and the callers' own clocks say when each call came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lmi import LiteLLMModel, LLMResult
from lmi.exceptions import RateLimitTimeout
from lmi.rate_limiter import GLOBAL_LIMITER
from tests.rate_limiter.windows import max_in_any_window
from tests.reliability.load_server import serving, stats
from tests.replay import Fault, ReplayServer, load_recording

RECORDING = "openai-chat-634cf7"
RESPONSES = "openai-responses-965e98"


@pytest.fixture
def load_server() -> Iterator[int]:
    with serving(RECORDING) as port:
        yield port


def _model(
    name: str, api_base: str, limit: str | None, transport: str = "native", **config: Any
) -> LiteLLMModel:
    params = {
        "model": "openai/gpt-4o-mini",
        "api_base": api_base,
        "api_key": "sk-test",
        "transport": transport,
    }
    return LiteLLMModel(
        name=name,
        config={
            "model_list": [{"model_name": name, "litellm_params": params}],
            "request_limit": {} if limit is None else {name: limit},
            "num_retries": 0,
            **config,
        },
    )


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_a_burst_never_exceeds_the_limit_in_any_window_the_server_sees(
    load_server: int, transport: str
) -> None:
    # The first window's requests each open a new connection, and every waiting caller's own work runs
    # between their grant and their write (through litellm: milliseconds of its CPU per call); the next
    # window's go out at once on pooled connections. Were requests counted from their grant, the server
    # would see most of two windows in one period.
    calls, limit = 600, 150  # "150 per 1 second": at least 3 s
    llm = _model(
        f"burst-{transport}", f"http://127.0.0.1:{load_server}/v1", f"{limit} per 1 second", transport
    )
    started = time.monotonic()
    results = await asyncio.gather(*(llm.call_single(f"question {i}") for i in range(calls)))
    wall = time.monotonic() - started
    assert all(result.text for result in results)
    arrivals = sorted(stats(load_server)["arrivals"])  # type: ignore[call-overload]
    assert len(arrivals) == calls
    assert wall >= (calls / limit - 1) - 0.1  # the limiter paced the run
    # The server stamps an arrival when its own process gets to it (now and then a scheduling slice
    # late on a loaded machine): 2 requests of slack for that. Counted from the grant, this was 300.
    assert max_in_any_window([(arrived, 1) for arrived in arrivals], 1.0) <= limit + 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _unreachable(failure: str) -> Iterator[int]:
    """A loopback port whose connections are refused, or never accepted (a full listen backlog: the
    handshake hangs until the client's connect timeout); afterwards the port is free again."""
    if failure == "refused":
        yield _free_port()  # nothing listens there
        return
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one connection not yet accepted ...
        filler.connect(listener.getsockname())  # ... taken: further handshakes go unanswered
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "connect timeout"])
@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_requests_that_never_reached_the_server_are_handed_back(
    transport: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "3 per 30 seconds": three unsent requests kept in the window would hold the next three for 30 s
    # (here: a RateLimitTimeout after 5 s). Handed back, the next three are released at once.
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "5")
    name = f"unsent-{transport}-{failure}"
    with _unreachable(failure) as port:
        base = f"http://127.0.0.1:{port}/{RECORDING}/v1"
        llm = _model(name, base, "3 per 30 seconds", transport, timeout=0.5)
        for _ in range(3):
            with pytest.raises(Exception, match=r"(?i)connection|timed? ?out"):  # as litellm words it
                await llm.call_single("hi")
    server = ReplayServer(port=port).start()
    try:
        started = time.monotonic()
        released = []

        async def call() -> None:
            assert (await llm.call_single("hi")).text
            released.append(time.monotonic() - started)

        await asyncio.gather(*(call() for _ in range(3)))
        assert len(server.requests_for(RECORDING)) == 3
        assert max(released) < 3.0, released
    finally:
        server.stop()


@pytest.fixture
def private_replay() -> Iterator[ReplayServer]:
    """A replay server of this test alone: every request it receives is this test's."""
    server = ReplayServer().start()
    yield server
    server.stop()


async def _behind_a_held_connection(
    server: ReplayServer, name: str, limit: str, transport: str = "native"
) -> tuple[asyncio.Task[LLMResult], asyncio.Task[LLMResult]]:
    """A slow call holding the only connection for 1 s, and a call to ``name`` under ``limit``, released
    to go at once and waiting for that connection."""
    base = server.openai_base(RECORDING)
    server.inject(RECORDING, Fault(delay=1.0, replay=True))
    # Through litellm the slow call is limited too, so that it goes through lmi's client and its pool.
    slow_limit = None if transport == "native" else "100 per 1 second"
    slow = _model(f"{name}-slow", base, slow_limit, transport, max_connections=1)
    limited = _model(name, base, limit, transport, max_connections=1)
    holding = asyncio.create_task(slow.call_single("hi"))
    await asyncio.to_thread(server.wait_for_requests, 1)
    waiting = asyncio.create_task(limited.call_single("hi"))
    await asyncio.sleep(0.3)  # waiting for the connection
    return holding, waiting


@pytest.mark.parametrize("transport", ["native", "litellm"])
async def test_a_request_written_late_is_counted_when_written_or_not_sent(
    private_replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    # One connection for everything: a slow call holds it for 1 s, so the limited call is written only
    # then (natively: granted at once and counted again at the write; through litellm: charged only at
    # the write). Meanwhile another use fills its window: counted at its write, it would exceed the
    # limit, so it is not written and the limiter's own error reaches the caller.
    monkeypatch.setenv("RATE_LIMITER_TIMEOUT", "1")
    name = f"pool-limited-{transport}"
    holding, waiting = await _behind_a_held_connection(private_replay, name, "1 per 30 seconds", transport)
    await GLOBAL_LIMITER.adjust(("client|request", name), 1, "1 per 30 seconds")
    with pytest.raises(RateLimitTimeout):
        await waiting
    assert (await holding).text
    assert len(private_replay.received) == 1  # the limited call never reached the server
    assert await _used(("client|request", name)) == 1  # the adjust alone: nothing of the unsent call


# Natively a call is charged when released and counted again at its write; through litellm, at its write.
@pytest.mark.parametrize(("transport", "charged_while_waiting"), [("native", 1), ("litellm", 0)])
async def test_a_call_cancelled_while_waiting_for_a_connection_hands_its_charge_back(
    private_replay: ReplayServer, transport: str, charged_while_waiting: int
) -> None:
    name = f"cancel-limited-{transport}"
    holding, waiting = await _behind_a_held_connection(private_replay, name, "5 per 30 seconds", transport)
    key = ("client|request", name)
    assert await _used(key) == charged_while_waiting
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await _used(key) == 0
    assert (await holding).text
    assert len(private_replay.received) == 1


async def _used(key: tuple[str, str]) -> int:
    """Units counted in ``key``'s window now (a key never charged has no window yet)."""
    status = (await GLOBAL_LIMITER.rate_limit_status()).get(key)
    return 0 if status is None else int(status["n_items_in_period"])


@pytest.mark.parametrize("failure", ["refused", "connect timeout"])
async def test_responses_api_requests_that_never_reached_the_server_take_nothing(failure: str) -> None:
    model = f"openai/gpt-4o-mini-{failure.replace(' ', '-')}"  # its own limiter key
    key = ("client|request", model)
    with _unreachable(failure) as port:
        llm = LiteLLMModel(
            name=f"unsent-responses-{failure}",
            llm_config={
                "name": model,
                "api_base": f"http://127.0.0.1:{port}/{RESPONSES}/v1",
                "api_key": "sk-test",
                "responses_api": True,
                "timeout": 0.5,
            },
            config={"request_limit": {model: "3 per 30 seconds"}, "num_retries": 0},
        )
        for _ in range(2):
            with pytest.raises(Exception, match=r"(?i)connect|timed? ?out"):
                await llm.call_single("What color is the sky?")
        assert await _used(key) == 0
    server = ReplayServer(port=port).start()
    try:  # one that does reach it is counted
        assert (await llm.call_single("What color is the sky?")).text
        assert len(server.requests_for(RESPONSES)) == 1
        assert await _used(key) == 1
    finally:
        server.stop()


async def test_a_users_own_litellm_calls_stay_on_litellms_own_client(
    private_replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litellm

    from lmi.llms.transports import litellm_clients

    base = private_replay.openai_base(RECORDING)
    llm = _model("own-litellm", base, "100 per 1 second", "litellm")
    assert (await llm.call_single("hi")).text  # lmi's client is built, and used
    on_lmis_pool: list[int] = []
    real = litellm_clients.session_for

    async def spy(max_connections: int) -> Any:
        on_lmis_pool.append(max_connections)
        return await real(max_connections)

    monkeypatch.setattr(litellm_clients, "session_for", spy)
    messages = [{"role": "user", "content": "hi"}]
    response = await litellm.acompletion(
        model="openai/gpt-4o-mini", api_base=base, api_key="sk-test", messages=messages
    )
    assert response.choices[0].message.content
    assert on_lmis_pool == []  # the user's call went on litellm's own client
    assert (litellm.aclient_session, litellm.client_session) == (None, None)
    assert (await llm.call_single("hi")).text
    assert on_lmis_pool  # and lmi's limited calls still on lmi's
    assert len(private_replay.received) == 3


@pytest.mark.parametrize("failure", ["refused", "connect timeout"])
async def test_anthropic_through_litellm_never_sent_takes_nothing(failure: str) -> None:
    recording = "anthropic-messages-29fd16"
    model = f"anthropic/{load_recording(recording)[0]['request']['model']}"
    name = f"unsent-anthropic-{failure}"
    with _unreachable(failure) as port:
        params = {"model": model, "api_base": f"http://127.0.0.1:{port}/{recording}", "api_key": "sk-test"}
        llm = LiteLLMModel(
            name=name,
            config={
                "model_list": [{"model_name": name, "litellm_params": params}],
                "request_limit": {name: "3 per 30 seconds"},
                "transport": "litellm",
                "num_retries": 0,
                "timeout": 0.5,
            },
        )
        for _ in range(2):
            with pytest.raises(Exception, match=r"(?i)connect|timed? ?out"):
                await llm.call_single("hi")
        assert await _used(("client|request", name)) == 0
    server = ReplayServer(port=port).start()
    try:  # one that does reach it is counted
        assert (await llm.call_single("hi")).text
        assert len(server.requests_for(recording)) == 1
        assert await _used(("client|request", name)) == 1
    finally:
        server.stop()


async def test_a_call_litellm_answers_without_lmis_client_is_still_charged(
    private_replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm may route a call where the client lmi passed does not apply (a client of another kind: it
    # then uses its own). The request went out all the same, so it must be counted.
    from lmi.llms.transports import litellm_clients

    async def ignored_client(request: dict[str, Any], call: str, max_connections: int) -> object:
        return object()  # not an AsyncHTTPHandler: litellm's Responses API handler uses its own client

    monkeypatch.setattr(litellm_clients, "client_for", ignored_client)
    model = "openai/gpt-4o-mini-elsewhere"  # its own limiter key
    llm = LiteLLMModel(
        name="charged-elsewhere",
        llm_config={
            "name": model,
            "api_base": private_replay.openai_base(RESPONSES),
            "api_key": "sk-test",
            "responses_api": True,
        },
        config={"request_limit": {model: "3 per 30 seconds"}, "num_retries": 0},
    )
    assert (await llm.call_single("What color is the sky?")).text
    assert len(private_replay.received) == 1
    assert await _used(("client|request", model)) == 1
