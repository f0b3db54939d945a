"""Chat calls through the cache, against recorded exchanges served on loopback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aviary.core import Message, Tool, ToolRequestMessage
from pydantic import BaseModel

from lmi import GLOBAL_COST_TRACKER, JSONSchemaValidationError, LiteLLMModel, enable_cost_tracking
from lmi.cache import open_cache
from lmi.cost import enable_cost_ledger
from lmi.rate_limiter import GLOBAL_LIMITER
from lmi.types import set_llm_session_ids
from tests.llms.helpers import recorded
from tests.replay import Fault, ReplayServer

UNIVERSE = [
    Message(role="system", content="Respond with single words."),
    Message(content="What is the meaning of the universe?"),
]
HOW_ARE_YOU = [
    Message(role="system", content="Respond with single words."),
    Message(content="Hello, how are you?"),
]


def model(
    replay: ReplayServer,
    recording: str,
    cache: Any,
    name: str = "gpt-4o-mini",
    sent: str | None = None,
    **config: Any,
) -> LiteLLMModel:
    params = {"model": sent or name, "api_base": replay.openai_base(recording)}
    return LiteLLMModel(
        name=name,
        config={"model_list": [{"model_name": name, "litellm_params": params}], "cache": cache, **config},
    )


async def test_second_identical_call_is_a_free_hit(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    miss = await llm.call_single(UNIVERSE)
    hit = await llm.call_single(UNIVERSE)
    assert len(replay.received) == 1
    assert not miss.cache_hit
    assert miss.cost > 0
    assert miss.cost_saved == 0
    assert hit.cache_hit
    assert hit.cost == 0.0
    assert hit.cost_saved == miss.cost
    body = recorded("openai-chat-634cf7")["body"]
    assert hit.text == miss.text == body["choices"][0]["message"]["content"]
    assert hit.messages == miss.messages
    assert (hit.prompt_count, hit.completion_count) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    assert hit.finish_reason == miss.finish_reason
    assert hit.model == miss.model
    assert hit.id != miss.id
    assert hit.prompt == UNIVERSE


async def test_a_hit_belongs_to_the_session_that_asked(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    first, second = uuid4(), uuid4()
    with set_llm_session_ids(first):
        miss = await llm.call_single(UNIVERSE)
    with set_llm_session_ids(second):
        hit = await llm.call_single(UNIVERSE)
    assert (miss.session_id, hit.session_id) == (first, second)
    assert hit.cache_hit
    assert (await llm.call_single(UNIVERSE)).session_id is None


async def test_a_hit_returns_all_n_results(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-n2-c3b9dc", tmp_path / "c.db")
    first = await llm.call(HOW_ARE_YOU, n=2, temperature=1.0)
    again = await llm.call(HOW_ARE_YOU, n=2, temperature=1.0)
    assert len(replay.received) == 1
    assert [r.text for r in again] == [r.text for r in first]
    assert len(again) == 2
    assert all(r.cache_hit and r.cost == 0 for r in again)
    assert sum(r.cost_saved for r in again) == pytest.approx(sum(r.cost for r in first), abs=1e-15)


async def test_streaming_callbacks_receive_the_stored_text(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-stream-29f559", tmp_path / "c.db")
    prompt = [Message(content="Say hello")]
    streamed: list[str] = []
    first = await llm.call_single(prompt, callbacks=[streamed.append], temperature=1.0)
    replayed: list[str] = []

    async def async_callback(delta: str) -> None:
        replayed.append(delta)

    hit = await llm.call_single(prompt, callbacks=[async_callback], temperature=1.0)
    assert len(replay.received) == 1
    assert replay.received[0].body["stream"] is True
    assert hit.cache_hit
    assert "".join(replayed) == "".join(streamed) == first.text == hit.text
    plain = await llm.call_single(prompt, temperature=1.0)  # the same request without streaming
    assert plain.cache_hit
    assert len(replay.received) == 1


async def test_tool_calls_come_back_as_tool_requests(replay: ReplayServer, tmp_path: Path) -> None:
    def my_function(x: int, y: str) -> str:
        """Do something.

        Args:
            x: a number
            y: a word
        """
        return y * x

    exchange = recorded("openai-chat-tools-7af1cb")
    request = exchange["request"]
    llm = model(replay, "openai-chat-tools-7af1cb", tmp_path / "c.db")
    prompt = [Message(**message) for message in request["messages"]]
    tools = [Tool.from_function(my_function)]
    first = await llm.call_single(prompt, tools=tools, tool_choice="auto")
    hit = await llm.call_single(prompt, tools=tools, tool_choice="auto")
    assert len(replay.received) == 1
    assert hit.cache_hit
    assert isinstance(hit.messages[0], type(first.messages[0]))
    if isinstance(first.messages[0], ToolRequestMessage):
        assert hit.messages[0].tool_calls == first.messages[0].tool_calls


async def test_different_parameters_are_different_entries(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    await llm.call_single(UNIVERSE, temperature=0)
    await llm.call_single(UNIVERSE, temperature=0.5)
    await llm.call_single(UNIVERSE, temperature=0, timeout=30)  # a timeout is no part of the key
    assert len(replay.received) == 2


async def test_bypass_and_refresh(replay: ReplayServer, tmp_path: Path) -> None:
    answers = [
        [choice["message"]["content"] for choice in recorded("openai-chat-n2-c3b9dc", i)["body"]["choices"]]
        for i in (0, 1)
    ]
    assert answers[0] != answers[1]  # the server answers the same request differently the second time
    llm = model(replay, "openai-chat-n2-c3b9dc", tmp_path / "c.db")

    async def ask(**kwargs: Any) -> list[Any]:
        return await llm.call(HOW_ARE_YOU, n=2, temperature=1.0, **kwargs)

    first = await ask()
    assert [r.text for r in first] == answers[0]
    bypassed = await ask(cache=False)
    assert not bypassed[0].cache_hit
    assert len(replay.received) == 2
    hit = await ask()
    assert hit[0].cache_hit
    assert [r.text for r in hit] == answers[0]
    refreshed = await ask(cache="refresh")
    assert not refreshed[0].cache_hit
    assert len(replay.received) == 3
    after = await ask()
    assert after[0].cache_hit
    assert [r.text for r in after] == [r.text for r in refreshed]
    assert len(replay.received) == 3
    with pytest.raises(ValueError, match="cache must be"):
        await ask(cache="sometimes")


async def test_failures_are_not_stored(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db", num_retries=0)
    replay.inject("openai-chat-634cf7", Fault(status=400, body='{"error": {"message": "bad request"}}'))
    with pytest.raises(Exception, match="bad request"):
        await llm.call_single(UNIVERSE)
    result = await llm.call_single(UNIVERSE)
    assert not result.cache_hit
    assert len(replay.received) == 2


async def test_a_broken_stream_is_not_stored(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-stream-29f559", tmp_path / "c.db", num_retries=0)
    prompt = [Message(content="Say hello")]
    replay.inject("openai-chat-stream-29f559", Fault(cut_after_events=2))
    with pytest.raises(Exception):  # noqa: B017, PT011 - whichever error the cut stream gives
        await llm.call_single(prompt, callbacks=[lambda _: None], temperature=1.0)
    result = await llm.call_single(prompt, callbacks=[lambda _: None], temperature=1.0)
    assert not result.cache_hit
    assert len(replay.received) == 2
    assert (await llm.call_single(prompt, temperature=1.0)).cache_hit


async def test_answers_that_fail_validation_are_not_stored(replay: ReplayServer, tmp_path: Path) -> None:
    class Meaning(BaseModel):
        meaning: int

    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    for _ in range(2):  # the recorded answer is a word, not this JSON: asked again each time
        with pytest.raises(JSONSchemaValidationError):
            await llm.call_single(UNIVERSE, output_type=Meaning)
    assert len(replay.received) == 2
    assert (await llm.response_cache().stats()).entries == 0


async def test_json_answers_are_validated_and_stored(replay: ReplayServer, tmp_path: Path) -> None:
    exchange = recorded("openai-chat-json-schema-n2-001bed")
    request = exchange["request"]
    schema = request["response_format"]["json_schema"]["schema"]
    llm = model(replay, "openai-chat-json-schema-n2-001bed", tmp_path / "c.db", name="gpt-4o-2024-11-20")
    prompt = [Message(**m) for m in request["messages"]]
    first = await llm.call(prompt, output_type=schema, n=2)
    again = await llm.call(prompt, output_type=schema, n=2)
    assert len(replay.received) == 1
    assert [r.text for r in again] == [r.text for r in first]


async def test_hits_charge_no_limiter(replay: ReplayServer, tmp_path: Path) -> None:
    name = f"cache-limits-{tmp_path.name}"
    llm = model(
        replay,
        "openai-chat-634cf7",
        tmp_path / "c.db",
        name=name,
        sent="gpt-4o-mini",
        request_limit={name: "100/minute"},
        rate_limit={name: "100000/minute"},
    )
    await llm.call_single(UNIVERSE)
    status = await GLOBAL_LIMITER.rate_limit_status()
    requests, tokens = status[("client|request", name)], status[("client", name)]
    for _ in range(3):
        assert (await llm.call_single(UNIVERSE)).cache_hit
    status = await GLOBAL_LIMITER.rate_limit_status()
    assert status[("client|request", name)]["n_items_in_period"] == requests["n_items_in_period"] == 1
    assert status[("client", name)]["n_items_in_period"] == tokens["n_items_in_period"]


async def test_tracker_and_ledger_record_hits_and_savings(replay: ReplayServer, tmp_path: Path) -> None:
    enable_cost_tracking(True)
    enable_cost_ledger(tmp_path / "ledger.db")
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    miss = await llm.call_single(UNIVERSE)
    spent = GLOBAL_COST_TRACKER.lifetime_cost_usd
    await llm.call_single(UNIVERSE)
    await llm.call_single(UNIVERSE)
    assert GLOBAL_COST_TRACKER.lifetime_cost_usd == spent == miss.cost
    totals = GLOBAL_COST_TRACKER.by_model["gpt-4o-mini"]
    assert (totals.calls, totals.cache_hits) == (3, 2)
    assert totals.cache_saved_usd == pytest.approx(2 * miss.cost)
    assert "2 call(s) answered by the response cache" in GLOBAL_COST_TRACKER.report()
    rows = (
        sqlite3.connect(tmp_path / "ledger.db")
        .execute("SELECT cost_usd, cache_hit, saved_usd FROM cost_ledger ORDER BY id")
        .fetchall()
    )
    assert rows == [(miss.cost, 0, 0.0), (0.0, 1, miss.cost), (0.0, 1, miss.cost)]
    stats = await llm.response_cache().stats()
    assert (stats.entries, stats.hits) == (1, 2)
    assert stats.saved_usd == pytest.approx(2 * miss.cost)


async def test_identical_concurrent_requests_make_one_call(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    replay.inject("openai-chat-634cf7", Fault(delay=0.3, replay=True))  # keep the first one in flight
    results = await asyncio.gather(*(llm.call_single(UNIVERSE) for _ in range(100)))
    assert len(replay.received) == 1
    assert len({r.text for r in results}) == 1
    assert sum(not r.cache_hit for r in results) == 1
    assert sum(r.cost for r in results) == pytest.approx(max(r.cost for r in results))


async def test_waiters_share_the_leaders_failure(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db", num_retries=0)
    replay.inject("openai-chat-634cf7", Fault(status=400, delay=0.2, body='{"error": {"message": "nope"}}'))
    outcomes = await asyncio.gather(*(llm.call_single(UNIVERSE) for _ in range(5)), return_exceptions=True)
    assert len(replay.received) == 1
    assert all(isinstance(o, Exception) for o in outcomes)


async def test_a_cancelled_leader_hands_over(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    replay.inject("openai-chat-634cf7", Fault(delay=0.5, replay=True))
    leader = asyncio.create_task(llm.call_single(UNIVERSE))
    await asyncio.to_thread(replay.wait_for_requests, 1)
    waiters = [asyncio.create_task(llm.call_single(UNIVERSE)) for _ in range(3)]
    await asyncio.sleep(0.05)
    leader.cancel()
    results = await asyncio.gather(*waiters)
    assert len(replay.received) == 2  # the cancelled call, then one of the waiters
    assert len({r.text for r in results}) == 1
    assert sum(not r.cache_hit for r in results) == 1


async def test_env_names_the_cache_and_config_false_turns_it_off(
    replay: ReplayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMI_CACHE", f"sqlite:///{tmp_path}/env.db")
    from_env = LiteLLMModel(
        name="gpt-4o-mini",
        config={
            "model_list": [
                {
                    "model_name": "gpt-4o-mini",
                    "litellm_params": {
                        "model": "gpt-4o-mini",
                        "api_base": replay.openai_base("openai-chat-634cf7"),
                    },
                }
            ]
        },
    )
    assert from_env.response_cache() is open_cache(tmp_path / "env.db")
    await from_env.call_single(UNIVERSE)
    assert (await from_env.call_single(UNIVERSE)).cache_hit
    off = model(replay, "openai-chat-634cf7", False)
    assert off.response_cache() is None
    assert not (await off.call_single(UNIVERSE)).cache_hit


def test_bad_cache_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"config\['cache'\].*ftp"):
        LiteLLMModel(config={"cache": "ftp://somewhere"})
    with pytest.raises(ValueError, match="max_size"):
        LiteLLMModel(config={"cache": {"url": str(tmp_path / "c.db"), "max_size": "lots"}})
    with pytest.raises(ValueError, match="ttl"):
        LiteLLMModel(config={"cache": f"sqlite:///{tmp_path}/c.db?ttl=-3d"})
    monkeypatch.setenv("LMI_CACHE", str(tmp_path / "file" / "sub.db"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="LMI_CACHE"):
        LiteLLMModel()


async def test_an_unreadable_entry_is_asked_again_and_replaced(replay: ReplayServer, tmp_path: Path) -> None:
    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    await llm.call_single(UNIVERSE)
    connection = sqlite3.connect(tmp_path / "c.db")
    with connection:
        connection.execute("UPDATE entries SET value = ?", (b'{"v": 999, "results": []}',))
    connection.close()
    assert not (await llm.call_single(UNIVERSE)).cache_hit
    assert (await llm.call_single(UNIVERSE)).cache_hit
    assert len(replay.received) == 2


async def test_hits_are_not_charged_to_budgets(replay: ReplayServer, tmp_path: Path) -> None:
    from lmi import BudgetExceeded, cost_tracking_ctx

    llm = model(replay, "openai-chat-634cf7", tmp_path / "c.db")
    await llm.call_single(UNIVERSE)
    with cost_tracking_ctx(budget_usd=1e-12):  # no call could fit
        assert (await llm.call_single(UNIVERSE)).cache_hit
        with pytest.raises(BudgetExceeded):
            await llm.call_single(UNIVERSE, cache=False)
    assert len(replay.received) == 1


_LIGHT = """
import asyncio, sys
from tests.replay import ReplayServer
from lmi import LiteLLMModel

server = ReplayServer().start()
params = {"model": "gpt-4o-mini", "api_base": server.openai_base("openai-chat-634cf7")}
llm = LiteLLMModel(
    name="gpt-4o-mini",
    config={"model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}], "cache": sys.argv[1]},
)

async def main():
    miss = await llm.call_single("What is the meaning of the universe?")
    hit = await llm.call_single("What is the meaning of the universe?")
    heavy = sorted(m for m in ("litellm", "aviary") if m in sys.modules)
    print("heavy:", heavy, hit.cache_hit, miss.cache_hit)

asyncio.run(main())
"""


def test_storing_and_hitting_import_neither_aviary_nor_litellm(tmp_path: Path) -> None:
    """A pipeline that reads text pays for neither heavy import, cached or not (messages build when read:
    test_second_identical_call_is_a_free_hit)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT, str(tmp_path / "c.db")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["heavy: [] True False"]
