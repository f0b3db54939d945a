"""First-use imports of the heavy dependencies (litellm, and aviary which imports it).

Each accessor is cached, so hot paths pay a function call rather than an ``import`` statement (which
costs about a microsecond even when the module is loaded).
"""

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


@cache
def aviary_core() -> ModuleType:
    """``aviary.core`` (Message, Tool, ...); it imports litellm, so litellm's price map stays offline."""
    litellm()
    import aviary.core as module

    return module
