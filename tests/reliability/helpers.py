"""The recordings the fault suite answers with, and router configs over them."""

from __future__ import annotations

from typing import Any

# Recordings the suite answers with: a plain chat (primary), another one (fallback), and streams.
PRIMARY = "openai-chat-634cf7"  # "What is the meaning of the universe?" -> "Existence."
BACKUP = "openai-chat-b2b746"  # the same question to gpt-5-mini -> "Mystery"
STREAM = "openai-chat-stream-29f559"  # "Say hello", streamed in 13 events
BACKUP_STREAM = "openai-chat-stream-9c40e6"  # "The duck says", streamed


def chat_config(primary_base: str, backup_base: str | None = None, **router: Any) -> dict[str, Any]:
    """A router config: ``primary`` (gpt-4o-mini) then, if given, ``backup`` (gpt-5-mini) as fallback."""
    model_list = [
        {"model_name": "primary", "litellm_params": {"model": "gpt-4o-mini", "api_base": primary_base}}
    ]
    config: dict[str, Any] = {"model_list": model_list, "router_kwargs": {"retry_backoff": 0.01, **router}}
    if backup_base is not None:
        model_list.append(
            {"model_name": "backup", "litellm_params": {"model": "gpt-5-mini", "api_base": backup_base}}
        )
        config["fallbacks"] = [{"primary": ["backup"]}]
    return config
