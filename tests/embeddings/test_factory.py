"""embedding_model_factory: which model each name designates, with its arguments."""

from __future__ import annotations

import subprocess
import sys

from lmi import (
    HybridEmbeddingModel,
    LiteLLMEmbeddingModel,
    SentenceTransformerEmbeddingModel,
    SparseEmbeddingModel,
    embedding_model_factory,
)


def test_names_route_to_models() -> None:
    sparse = embedding_model_factory("sparse", ndim=64)
    assert isinstance(sparse, SparseEmbeddingModel)
    assert sparse.ndim == 64

    local = embedding_model_factory("st-sentence-transformers/all-MiniLM-L6-v2", config={"device": "cpu"})
    assert isinstance(local, SentenceTransformerEmbeddingModel)
    assert local.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert local.config == {"device": "cpu"}

    dense = embedding_model_factory("text-embedding-3-large", batch_size=8)
    assert isinstance(dense, LiteLLMEmbeddingModel)
    assert (dense.name, dense.batch_size) == ("text-embedding-3-large", 8)

    hybrid = embedding_model_factory("hybrid-st-my-model")
    assert isinstance(hybrid, HybridEmbeddingModel)
    assert [type(m) for m in hybrid.models] == [SentenceTransformerEmbeddingModel, SparseEmbeddingModel]
    assert hybrid.models[0].name == "my-model"
    assert hybrid.name == "hybrid-st-my-model"

    hybrid = embedding_model_factory("hybrid-text-embedding-3-small", ndim=64, batch_size=4)
    dense, sparse = hybrid.models
    assert isinstance(sparse, SparseEmbeddingModel)
    assert sparse.ndim == 64  # the sparse half gets the kwargs that are its fields, as in fhlmi
    assert isinstance(dense, LiteLLMEmbeddingModel)
    assert dense.batch_size == 4


def test_constructing_models_imports_nothing_heavy() -> None:
    script = (
        "import sys\n"
        "import lmi\n"
        "for name in ('sparse', 'hybrid-text-embedding-3-small', 'st-x', 'voyage/voyage-3'):\n"
        "    lmi.embedding_model_factory(name)\n"
        "heavy = ('litellm', 'tiktoken', 'numpy', 'torch', 'sentence_transformers', 'aviary')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"


def test_factory_keyword_arguments_land_in_config_as_in_fhlmi() -> None:
    """fhlmi builds ``LiteLLMEmbeddingModel(name=..., config=kwargs)``: code reads them back from config."""
    for name in ("text-embedding-3-small", "litellm-text-embedding-3-small"):
        model = embedding_model_factory(name, batch_size=4, kwargs={"timeout": 30})
        assert model.config == {"batch_size": 4, "kwargs": {"timeout": 30}}
        assert model.batch_size == 4  # and the model batches by it


def test_a_litellm_config_given_without_kwargs_gets_fhlmis_retrying_defaults() -> None:
    defaults = {"num_retries": 3, "timeout": 120}
    assert LiteLLMEmbeddingModel(config={"batch_size": 8}).config == {"batch_size": 8, "kwargs": defaults}
    assert embedding_model_factory("text-embedding-3-small").config == {"kwargs": defaults}
    assert LiteLLMEmbeddingModel().config == {}  # no config given: nothing added
    given = {"kwargs": {"timeout": 5}}
    assert LiteLLMEmbeddingModel(config=given).config == given  # kwargs given: kept as they are
