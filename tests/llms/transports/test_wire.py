"""The SSE reader on aiohttp's own stream reader: any chunking of a recorded stream gives the same events,
and a stream cut anywhere but between events is an error, never a silently shorter answer."""

from __future__ import annotations

import asyncio
import itertools
import json
from unittest import mock

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmi.llms.transports.wire import StreamCut, sse_events
from tests.llms.transports.differential import cases

STREAMS = [
    case.exchange["response"].encode()
    for path in ("/v1/chat/completions", "/v1/messages")
    for case in cases(path)
    if case.exchange["content_type"].startswith("text/event-stream")
]


def _expected(raw: bytes) -> list[tuple[str | None, bytes]]:
    """Events as the SSE format defines them, parsed independently: blocks between blank lines."""
    events = []
    for block in raw.split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
        if data:
            events.append((name, b"\n".join(data)))
    return events


async def _read(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    reader = aiohttp.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [event async for event in sse_events(reader)]


def _chunks(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(raw) + 1) for c in cuts}), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def test_every_recorded_stream_is_covered() -> None:
    assert len(STREAMS) >= 15


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_gives_the_recorded_events(index: int, cuts: list[int]) -> None:
    raw = STREAMS[index % len(STREAMS)]
    events = asyncio.run(_read(_chunks(raw, cuts)))
    assert events == _expected(raw)
    for _, data in events:
        if data != b"[DONE]":
            json.loads(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0), at=st.integers(min_value=1))
def test_a_cut_inside_an_event_raises_and_a_cut_between_events_does_not(index: int, at: int) -> None:
    raw = STREAMS[index % len(STREAMS)]
    cut = raw[: at % len(raw)]
    between = cut.endswith(b"\n\n") or not cut.strip(b"\n")
    if between:
        assert asyncio.run(_read([cut])) == _expected(cut)
        return
    try:
        events = asyncio.run(_read([cut]))
    except StreamCut:
        return
    # Not raised: only possible when the cut left whole events plus nothing but a final [DONE].
    assert events == _expected(cut)
    assert cut.rstrip(b"\n").endswith(b"data: [DONE]")


@pytest.mark.parametrize("ending", [b"data: [DONE]\n", b"data: [DONE]"])
async def test_a_final_done_marker_without_its_blank_line_still_ends_the_stream(ending: bytes) -> None:
    events = await _read([b'data: {"a": 1}\n\n' + ending])
    assert events == [(None, b'{"a": 1}'), (None, b"[DONE]")]
