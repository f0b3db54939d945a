"""SparseEmbeddingModel: hashed token counts, checked against an independent per-document computation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest

from lmi import SparseEmbeddingModel
from lmi.embeddings import sparse

TEXTS = [
    "The mitochondria is the powerhouse of the cell.",
    "",
    "the the the the",
    "Ünïcödé text, emoji 🧬 and numbers 12345678",
    "  \n\t ",
    "def f(x):\n    return x ** 2\n",
    "a lone \ud800 surrogate <|endoftext|> and a special token's text",
]


def reference_vector(text: str, ndim: int) -> list[float]:
    """The definition, one document at a time: cl100k token ids mod ndim, counted, over the token count."""
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base")
    tokens = encoding.encode_ordinary(text)
    counts = Counter(token % ndim for token in tokens)
    return [counts[bucket] / len(tokens) if tokens else 0.0 for bucket in range(ndim)]


@pytest.fixture
def tiktoken_reads_litellms_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets tiktoken's own loader (the reference) find cl100k_base offline, for this test only."""
    from lmi._tokenizer import bundled_cl100k_path

    path = bundled_cl100k_path()
    assert path is not None
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(path.parent))


@pytest.mark.usefixtures("tiktoken_reads_litellms_copy")
@pytest.mark.parametrize("ndim", [256, 7, 1024])
async def test_vectors_match_the_per_document_definition(ndim: int) -> None:
    model = SparseEmbeddingModel(ndim=ndim)

    vectors = await model.embed_documents(TEXTS)

    assert len(vectors) == len(TEXTS)
    for text, vector in zip(TEXTS, vectors, strict=True):
        assert len(vector) == ndim
        assert vector == pytest.approx(reference_vector(text, ndim), abs=1e-12)


async def test_defaults_and_empty_inputs() -> None:
    model = SparseEmbeddingModel()
    assert (model.name, model.ndim) == ("sparse", 256)

    vectors = await model.embed_documents(["", "hello", ""])

    assert vectors[0] == vectors[2] == [0.0] * 256
    assert math.isclose(sum(v * v for v in vectors[1]), 1.0)
    assert await model.embed_documents([]) == []


async def test_rows_do_not_depend_on_their_neighbours() -> None:
    model = SparseEmbeddingModel(ndim=64)

    together = await model.embed_documents(TEXTS)
    alone = [await model.embed_document(text) for text in TEXTS]
    reversed_order = await model.embed_documents(TEXTS[::-1])

    assert together == alone
    assert reversed_order == together[::-1]


async def test_large_inputs_take_the_worker_thread_path_with_the_same_result() -> None:
    model = SparseEmbeddingModel(ndim=32)
    texts = [f"document {i}: " + "lorem ipsum dolor sit amet " * 40 for i in range(40)]
    assert sum(map(len, texts)) > sparse.INLINE_CHARACTERS

    threaded = await model.embed_documents(texts)

    assert threaded == model.embed_sync(texts)
    assert threaded[:2] == await model.embed_documents(texts[:2])  # small: computed inline


def test_same_vectors_in_a_fresh_process_with_no_network(tmp_path: os.PathLike[str]) -> None:
    """A new process, tiktoken's cache empty and every proxy dead: the bundled ranks are all it has."""
    script = (
        "import asyncio, json, os, sys\n"
        "from lmi import SparseEmbeddingModel\n"
        "texts = json.loads(sys.argv[1])\n"
        "vectors = asyncio.run(SparseEmbeddingModel(ndim=16).embed_documents(texts))\n"
        "print(json.dumps({'vectors': vectors, 'cache_dir': os.environ.get('TIKTOKEN_CACHE_DIR'),\n"
        "                  'litellm_imported': 'litellm' in sys.modules}))\n"
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": "",  # "" disables tiktoken's cache: only a download could find the ranks
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    output = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TEXTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(output.stdout)

    assert result["vectors"] == SparseEmbeddingModel(ndim=16).embed_sync(TEXTS)
    assert result["cache_dir"] == ""  # the process environment was left alone
    assert not result["litellm_imported"]


@pytest.mark.parametrize(("texts", "index"), [([None], 0), (["a", 1.5], 1)])
async def test_non_string_items_are_a_type_error_naming_the_index(texts: list, index: int) -> None:
    with pytest.raises(TypeError, match=rf"texts\[{index}\]"):
        await SparseEmbeddingModel().embed_documents(texts)


def test_ndim_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        SparseEmbeddingModel(ndim=0)
