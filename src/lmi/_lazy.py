"""First-use imports of the heavy dependencies (litellm, and aviary which imports it)."""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType


@cache
def litellm() -> ModuleType:
    """Import litellm on first use, reading its price map from the installed package, not the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    return module
