"""The offline cl100k_base build agrees with tiktoken's own definition of the encoding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from lmi._tokenizer import bundled_cl100k_path, cl100k


def test_bundled_copy_builds_the_same_encoding_as_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiktoken_ext.openai_public import cl100k_base

    path = bundled_cl100k_path()
    assert path is not None
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(path.parent))  # tiktoken's loader, offline
    official = cl100k_base()

    ours = cl100k()

    assert ours.name == official["name"]
    assert ours._pat_str == official["pat_str"]
    assert ours._special_tokens == official["special_tokens"]
    assert ours._mergeable_ranks == official["mergeable_ranks"]


def test_encoding_is_built_once_even_when_first_used_from_many_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        encodings = list(pool.map(lambda _: cl100k(), range(8)))

    assert all(encoding is encodings[0] for encoding in encodings)
    assert encodings[0].decode(encodings[0].encode_ordinary("round trip ✓")) == "round trip ✓"
