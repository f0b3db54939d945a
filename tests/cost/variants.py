"""One-field variants of real recordings, in the provider's own wire format, and prices read by hand.

A variant is a recorded exchange list with one field of one response changed (``edit`` gets the parsed
JSON body, or each SSE event of a stream, and changes it in place). Expected costs come from litellm's
bundled price map JSON, read here directly: independent of the library's pricing code.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.replay import ReplayServer, load_recording

Edit = Callable[[dict[str, Any]], None]


@functools.cache
def price_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def serve_variant(replay: ReplayServer, recording: str, edit: Edit, index: int = 0, name: str = "") -> str:
    """Serve ``recording`` with exchange ``index`` edited; return the name it is served under."""
    exchanges = copy.deepcopy(load_recording(recording))
    exchange = exchanges[index]
    if exchange["content_type"].startswith("text/event-stream"):
        exchange["response"] = _edit_events(exchange["response"], edit)
    else:
        body = json.loads(exchange["response"])
        edit(body)
        exchange["response"] = json.dumps(body)
    served = name or f"{recording}-variant-{id(edit)}"
    replay.add_recording(served, exchanges)
    return served


def _edit_events(stream: str, edit: Edit) -> str:
    events = []
    for event in stream.split("\n\n"):
        lines = []
        for line in event.split("\n"):
            if line.startswith("data:") and line.strip() != "data: [DONE]":
                data = json.loads(line[len("data:") :])
                edit(data)
                line = "data: " + json.dumps(data)
            lines.append(line)
        events.append("\n".join(lines))
    return "\n\n".join(events)


def body(recording: str, index: int = 0) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(load_recording(recording)[index]["response"])
    return parsed
