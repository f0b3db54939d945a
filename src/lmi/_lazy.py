"""First-use imports of the heavy dependencies (litellm, aviary).

Each accessor is cached, so hot paths pay a function call rather than an ``import`` statement (which
costs about a microsecond even when the module is loaded).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType


@cache
def litellm() -> ModuleType:
    """Import litellm on first use (``import lmi`` has told it to read its bundled price map)."""
    import litellm as module

    return module


@cache
def aviary_core() -> ModuleType:
    """``aviary.core`` (Message, Tool, ...)."""
    import aviary.core as module

    return module
