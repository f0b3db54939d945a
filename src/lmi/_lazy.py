"""First-use imports of the heavy dependencies (litellm, aviary).

Each accessor is cached, so hot paths pay a function call rather than an ``import`` statement (which
costs about a microsecond even when the module is loaded).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType


@cache
def litellm() -> ModuleType:
    """Import litellm on first use (``import lmi`` has told it to read its bundled price map).

    ``suppress_debug_info`` is litellm's setting for the "Provider List" / "Give Feedback" banners it
    otherwise prints to stdout with every failed call: a library's output is its caller's.
    """
    import litellm as module

    module.suppress_debug_info = True
    return module


@cache
def aviary_core() -> ModuleType:
    """``aviary.core`` (Message, Tool, ...)."""
    import aviary.core as module

    return module
