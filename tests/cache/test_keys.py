"""Cache keys: exact, canonical, stable across processes and versions, blind to secrets and timeouts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aviary.core import Message, Tool
from hypothesis import given
from hypothesis import strategies as st

from lmi import LiteLLMModel
from lmi.cache.keys import ChatKeys, UncacheableRequest, chat_key, embedding_key, embedding_key_prefix

MESSAGES = [{"role": "user", "content": "What is the meaning of the universe?"}]
BASE = {"model": "gpt-4o-mini", "temperature": 0.0}


def test_pinned_digests() -> None:
    # Changing these means every user's cache silently empties: do it only with KEY_VERSION.
    assert chat_key(BASE, MESSAGES) == "59acda122644320ba01affe07a59f2160196f75e2e3806be03ce9e252af27123"
    assert chat_key({"model": "claude-haiku-4-5", "max_tokens": 64, "n": 2}, MESSAGES) == (
        "17baf6429663f004cbaf18906d2488da2f5d09c9bb088eee06e0544139e03d43"
    )
    prefix = embedding_key_prefix("text-embedding-3-small", {"dimensions": 8})
    assert embedding_key(prefix, "test") == (
        "c374187c2f290399039f1011a1c968fdc227f65f914c9d00d617c0fc41a8e865"
    )


def test_key_is_the_documented_canonical_json_hashed() -> None:
    document = {"kind": "chat", "v": 1, "model": "gpt-4o-mini", "params": {"temperature": 0.0}}
    text = json.dumps({**document, "messages": MESSAGES}, sort_keys=True, separators=(",", ":"))
    assert chat_key(BASE, MESSAGES) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "ignored",
    [
        {"api_key": "sk-other"},
        {"timeout": 3.0},
        {"metadata": {"run": 7}},
        {"headers": {"x-trace": "1"}},
        {"extra_headers": {"x-trace": "2"}},
        {"max_retries": 0},
        {"num_retries": 5},
        {"aws_secret_access_key": "shh"},
        {"vertex_credentials": "{...}"},
        {"azure_ad_token": "t"},
        {"user": "end-user-1"},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"n": 1},
    ],
)
def test_what_never_changes_the_answer_is_not_in_the_key(ignored: dict[str, object]) -> None:
    assert chat_key({**BASE, **ignored}, MESSAGES) == chat_key(BASE, MESSAGES)


@pytest.mark.parametrize(
    "changed",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"seed": 1},
        {"n": 2},
        {"max_tokens": 10},
        {"top_p": 0.9},
        {"stop": ["\n"]},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"api_base": "http://127.0.0.1:1/v1"},
        {"custom_llm_provider": "openai"},
        {"reasoning_effort": "high"},
        {"logprobs": True},
    ],
)
def test_what_can_change_the_answer_is_in_the_key(changed: dict[str, object]) -> None:
    assert chat_key({**BASE, **changed}, MESSAGES) != chat_key(BASE, MESSAGES)


def test_messages_and_images_are_in_the_key() -> None:
    image = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    other_image = [image[0], {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAB"}}]
    keys = {
        chat_key(BASE, MESSAGES),
        chat_key(BASE, [{"role": "user", "content": "What is the meaning of the universe? "}]),
        chat_key(BASE, [{"role": "system", "content": "x"}, *MESSAGES]),
        chat_key(BASE, [{"role": "user", "content": image}]),
        chat_key(BASE, [{"role": "user", "content": other_image}]),
    }
    assert len(keys) == 5


def test_parameter_order_and_tuples_do_not_matter() -> None:
    reordered = {"temperature": 0.0, "stop": ("a", "b"), "model": "gpt-4o-mini"}
    assert chat_key(reordered, MESSAGES) == chat_key({**BASE, "stop": ["a", "b"]}, MESSAGES)


def test_unrepresentable_parameter_is_refused_by_name() -> None:
    with pytest.raises(UncacheableRequest, match="'logit_bias'"):
        chat_key({**BASE, "logit_bias": object()}, MESSAGES)
    with pytest.raises(UncacheableRequest, match="nan"):
        chat_key({**BASE, "temperature": float("nan")}, MESSAGES)


def test_model_key_is_the_request_as_sent_and_shared_by_call_and_call_single() -> None:
    llm = LiteLLMModel(name="gpt-4o-mini", config={"temperature": 0, "api_key": "sk-a", "timeout": 5})
    other_key = LiteLLMModel(name="gpt-4o-mini", config={"temperature": 0, "api_key": "sk-b"})
    prompt = [Message(content="hi")]
    assert llm.cache_key(prompt, {}) == llm.cache_key(prompt, {"n": 1})
    assert llm.cache_key(prompt, {}) == other_key.cache_key(prompt, {})
    assert llm.cache_key(prompt, {}) == chat_key(
        {"model": "gpt-4o-mini", "temperature": 0}, [{"role": "user", "content": "hi"}]
    )
    assert llm.cache_key(prompt, {}) != llm.cache_key(prompt, {"temperature": 1})


def test_tools_are_in_the_key() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: first
            b: second
        """
        return a + b

    def sub(a: int, b: int) -> int:
        """Subtract.

        Args:
            a: first
            b: second
        """
        return a - b

    llm = LiteLLMModel(name="gpt-4o-mini")
    prompt = [Message(content="hi")]
    with_add = llm.cache_key(prompt, {"tools": [Tool.from_function(add)]})
    with_sub = llm.cache_key(prompt, {"tools": [Tool.from_function(sub)]})
    assert len({with_add, with_sub, llm.cache_key(prompt, {})}) == 3


def test_keys_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = "import json, sys; from lmi.cache.keys import chat_key;print(chat_key(*json.loads(sys.argv[1])))"
    request = {**BASE, "stop": ["b", "a"], "logit_bias": {"50256": -100, "1": 2}}
    here = chat_key(request, MESSAGES)
    src = str(Path(__file__).resolve().parents[2] / "src")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": src}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps([request, MESSAGES])],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == here


_VALUES = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(0, 2) | st.text(max_size=3)
_PARAMS = st.dictionaries(
    st.sampled_from(["temperature", "n", "seed", "stop", "api_key", "timeout", "max_tokens", "model"]),
    _VALUES | st.lists(_VALUES, max_size=2),
    max_size=4,
)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system"])},
        optional={"content": st.text(max_size=5) | st.lists(st.fixed_dictionaries({"text": st.text()}))},
    ),
    min_size=1,
    max_size=3,
)


@given(base=_PARAMS, kwargs=_PARAMS, messages=_MESSAGES)
def test_a_models_keys_with_call_overrides_are_the_documented_digest(
    base: dict[str, object], kwargs: dict[str, object], messages: list[dict[str, object]]
) -> None:
    """The per-model key builder (parameters made canonical once) against the documented document."""
    request = {"model": "gpt-4o-mini", **base, **kwargs}
    model = request.pop("model")
    params = {
        name: value
        for name, value in request.items()
        if value is not None and name not in {"api_key", "timeout"} and not (name == "n" and value == 1)
    }
    document = {"kind": "chat", "v": 1, "model": str(model), "params": params, "messages": messages}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert ChatKeys({"model": "gpt-4o-mini", **base}).key(kwargs, messages) == expected
