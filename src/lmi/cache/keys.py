"""Exact cache keys: the canonical form of a request, hashed.

A key is the SHA-256 (hex) of a canonical JSON document describing what was asked of the provider:

* chat: ``{"kind": "chat", "v": 1, "model": ..., "params": {...}, "messages": [...]}``
* embeddings, one per text: ``{"kind": "embedding", "v": 1, "model": ..., "params": {...}, "input": text}``

``model`` is the model string sent to the provider (``"gpt-4o-mini"``, ``"anthropic/claude-..."``);
``params`` holds every request parameter that can change the answer (temperature, seed, n, tools,
tool_choice, response_format, api_base, custom_llm_provider, ...); ``messages`` are the messages as sent,
images included. Never part of a key: credentials (``api_key`` and anything named like a secret),
timeouts, retry counts, metadata, headers, streaming switches, end-user ids and routing hints (see
:data:`IGNORED_PARAMS`). ``n=1`` is the default and is dropped, so ``call`` and ``call_single`` share keys.

Canonical JSON: keys sorted, no whitespace, UTF-8 (not ``\\u`` escapes), integers as integers and floats
in Python's shortest round-trip form, tuples as lists. The same request gives the same key in every
process and every Python version; ``tests/cache/test_keys.py`` pins a few digests so a change is noticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from lmi.exceptions import LMIError

KEY_VERSION: Final = 1

# Parameters that never change what the model answers.
IGNORED_PARAMS: Final = frozenset(
    {
        "api_key", "timeout", "request_timeout", "stream_timeout", "max_retries", "num_retries",
        "metadata", "headers", "extra_headers", "stream", "stream_options", "user", "safety_identifier",
        "prompt_cache_key", "service_tier", "organization", "messages", "input", "encoding_format",
        "litellm_call_id", "litellm_logging_obj", "mock_timeout", "caching", "cache", "client",
    }
)  # fmt: skip
# Anything named like a credential is left out too, whatever the provider calls it.
_SECRET_NAME: Final = re.compile(r"(secret|password|passwd|credential|token$|_key$|^key$|access_key)", re.I)


class UncacheableRequest(LMIError, TypeError):
    """A request parameter has no canonical form (e.g. an arbitrary object): the call is not cached."""


def _canonical(value: Any, where: str) -> Any:
    """``value`` as plain JSON data, or UncacheableRequest naming where it was."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UncacheableRequest(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, type):  # a pydantic model class as response_format
        schema = getattr(value, "model_json_schema", None)
        if schema is not None:
            return {"$schema": _canonical(schema(), where)}
    dump = getattr(value, "model_dump", None)  # a pydantic object (an aviary Tool, a message)
    if callable(dump):
        return _canonical(dump(mode="json", exclude_none=True, by_alias=True), where)
    raise UncacheableRequest(f"{where} is a {type(value).__name__}, which has no canonical form")


def answer_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a request that can change the answer, canonical."""
    kept = {
        key: _canonical(value, f"parameter {key!r}")
        for key, value in params.items()
        if key not in IGNORED_PARAMS and not _SECRET_NAME.search(key) and value is not None
    }
    if kept.get("n") == 1:
        del kept["n"]
    return kept


_ENCODE: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


_STRING: Final = json.encoder.encode_basestring  # a str as JSON, non-ASCII kept (ensure_ascii=False)


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(_ENCODE(document).encode()).hexdigest()


def _plain_messages_json(messages: list[Any]) -> str | None:
    """The canonical JSON of messages that are dicts of text (the common prompt), written directly (as
    the encoder would: keys sorted, strings escaped alike); None for anything else."""
    parts = []
    for message in messages:
        if type(message) is not dict:
            return None
        fields = []
        for name, value in sorted(message.items()):
            if type(name) is not str or type(value) is not str:
                return None
            fields.append(f"{_STRING(name)}:{_STRING(value)}")
        parts.append("{" + ",".join(fields) + "}")
    return "[" + ",".join(parts) + "]"


class ChatKeys:
    """The keys of one model's chat requests; its own parameters (``request``) are made canonical once.

    The canonical document is written in its sorted order, so the key is :func:`digest` of the document
    of the module's docstring without building it: ``{"kind":"chat","messages":…,"model":…,"params":…,
    "v":1}``.
    """

    __slots__ = ("_model", "_params", "_tail")

    def __init__(self, request: Mapping[str, Any]) -> None:
        self._model = str(request.get("model", ""))
        self._params = answer_params({k: v for k, v in request.items() if k != "model"})
        self._tail = self._tail_of(self._params)

    def _tail_of(self, params: dict[str, Any]) -> bytes:
        return f',"model":{_ENCODE(self._model)},"params":{_ENCODE(params)},"v":{KEY_VERSION}}}'.encode()

    def _changes_nothing(self, kwargs: Mapping[str, Any]) -> bool:
        for name, value in kwargs.items():
            if name == "n" and value == 1 and "n" not in self._params:
                continue
            if name not in IGNORED_PARAMS and not _SECRET_NAME.search(name):
                return False
        return True

    def key(self, kwargs: Mapping[str, Any], messages: list[Any]) -> str:
        """The key of asking ``messages`` with this model's parameters overridden by ``kwargs``."""
        if self._changes_nothing(kwargs):  # e.g. call_single's n=1
            tail = self._tail
        elif "model" in kwargs:
            return ChatKeys({**self._params, **kwargs}).key({}, messages)
        else:
            params = dict(self._params)
            for name, value in kwargs.items():
                if name in IGNORED_PARAMS or _SECRET_NAME.search(name):
                    continue
                if value is None:
                    params.pop(name, None)
                else:
                    params[name] = _canonical(value, f"parameter {name!r}")
            if params.get("n") == 1:
                del params["n"]
            tail = self._tail_of(params)
        text = (_plain_messages_json(messages) or _ENCODE(_canonical(messages, "messages"))).encode()
        hashed = hashlib.sha256(b'{"kind":"chat","messages":')
        hashed.update(text)
        hashed.update(tail)
        return hashed.hexdigest()


def chat_key(request: Mapping[str, Any], messages: list[Any]) -> str:
    """The key of a chat request: ``request`` holds ``model`` and the parameters, ``messages`` the prompt."""
    return ChatKeys(request).key({}, messages)


def embedding_key_prefix(model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What every text's key shares for one embedding model (built once per model)."""
    return {
        "kind": "embedding",
        "v": KEY_VERSION,
        "model": model,
        "params": answer_params({k: v for k, v in params.items() if k != "model"}),
    }


def embedding_key(prefix: Mapping[str, Any], text: str) -> str:
    return digest({**prefix, "input": text})


__all__ = [
    "IGNORED_PARAMS",
    "KEY_VERSION",
    "ChatKeys",
    "UncacheableRequest",
    "answer_params",
    "chat_key",
    "digest",
    "embedding_key",
    "embedding_key_prefix",
]
