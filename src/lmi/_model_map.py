"""litellm's model map (prices, context windows, vector sizes), read without importing litellm.

``litellm.model_cost`` is used when litellm is already imported (it may hold models the user registered
or a map litellm fetched); otherwise the copy of the map that litellm ships as JSON, read once.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

_BUNDLED_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def bundled_model_map() -> dict[str, Any]:
    """The JSON map in litellm's installed package (``{}`` when litellm is not installed)."""
    spec = importlib.util.find_spec("litellm")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / _BUNDLED_FILE
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
    return {}


def model_map() -> dict[str, Any]:
    """litellm's live map when litellm is loaded, else its bundled JSON copy."""
    litellm = sys.modules.get("litellm")
    model_cost = getattr(litellm, "model_cost", None)
    return model_cost if isinstance(model_cost, dict) and model_cost else bundled_model_map()
