"""fhlmi's public names and module paths (COMPAT.md §1, §5, §6, §10, §11) resolve, from outside."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
import uuid

import pytest

import lmi

COMPAT_ALL = {
    "CHARACTERS_PER_TOKEN_ASSUMPTION": "lmi.constants",
    "EXTRA_TOKENS_FROM_USER_ROLE": "lmi.constants",
    "GLOBAL_COST_TRACKER": "lmi.cost_tracker",
    "cost_tracking_ctx": "lmi.cost_tracker",
    "enable_cost_tracking": "lmi.cost_tracker",
    "EmbeddingModel": "lmi.embeddings",
    "EmbeddingModes": "lmi.embeddings",
    "HybridEmbeddingModel": "lmi.embeddings",
    "LiteLLMEmbeddingModel": "lmi.embeddings",
    "SentenceTransformerEmbeddingModel": "lmi.embeddings",
    "SparseEmbeddingModel": "lmi.embeddings",
    "embedding_model_factory": "lmi.embeddings",
    "JSONSchemaValidationError": "lmi.exceptions",
    "CommonLLMNames": "lmi.llms",
    "LLMModel": "lmi.llms",
    "LiteLLMModel": "lmi.llms",
    "sum_logprobs": "lmi.llms",
    "validate_json_completion": "lmi.llms",
    "Embeddable": "lmi.types",
    "LLMResponse": "lmi.types",
    "LLMResult": "lmi.types",
    "configure_llm_logs": "lmi.utils",
}


@pytest.mark.parametrize(("name", "home"), sorted(COMPAT_ALL.items()))
def test_every_fhlmi_export_is_the_object_of_its_home_module(name: str, home: str) -> None:
    assert name in lmi.__all__
    assert getattr(lmi, name) is getattr(importlib.import_module(home), name)


def test_llms_all_and_lazy_router() -> None:
    import lmi.llms

    expected = {
        "CommonLLMNames", "LLMModel", "LiteLLMModel", "PassThroughRouter", "estimate_message_tokens",
        "extract_top_logprobs", "parse_cached_usage", "rate_limited", "request_limited", "sum_logprobs",
        "validate_json_completion",
    }  # fmt: skip
    assert expected <= set(lmi.llms.__all__)
    for name in expected:
        assert getattr(lmi.llms, name) is not None


def test_version_lives_in_lmi_version_only() -> None:
    from importlib.metadata import version

    from lmi.version import __version__

    assert __version__ == version("lmi")
    assert not hasattr(lmi, "__version__")


def test_constants() -> None:
    from lmi import constants

    assert constants.CHARACTERS_PER_TOKEN_ASSUMPTION == 4.0
    assert constants.EXTRA_TOKENS_FROM_USER_ROLE == 7
    assert len(constants.DEFAULT_VERTEX_SAFETY_SETTINGS) == 4
    assert {s["threshold"] for s in constants.DEFAULT_VERTEX_SAFETY_SETTINGS} == {"BLOCK_ONLY_HIGH"}
    assert constants.normalize_redis_url("localhost:6379") == "redis://localhost:6379"
    assert constants.normalize_redis_url("rediss://h:1") == "rediss://h:1"
    assert (sys.version_info < (3, 12)) == constants.IS_PYTHON_BELOW_312


def test_exceptions_and_their_bases() -> None:
    from lmi.exceptions import (
        AllModelsExhaustedError,
        JSONSchemaValidationError,
        ModelCallError,
        ModelRefusalError,
        ResponseValidationError,
    )

    assert issubclass(JSONSchemaValidationError, ValueError)
    assert issubclass(ResponseValidationError, RuntimeError)
    refusal = ModelRefusalError("no", model="m", finish_reason="content_filter", response={"r": 1})
    assert isinstance(refusal, RuntimeError)
    assert (refusal.model, refusal.finish_reason, refusal.response) == ("m", "content_filter", {"r": 1})
    cause = KeyError("boom")
    exhausted = AllModelsExhaustedError(cause)
    assert isinstance(exhausted, RuntimeError)
    assert isinstance(exhausted, ModelCallError)  # both `except` styles catch it
    assert exhausted.last_exc is cause
    assert AllModelsExhaustedError().last_exc is None


def test_retry_module() -> None:
    import litellm

    from lmi.exceptions import ModelRefusalError, ResponseValidationError
    from lmi.retry import BACKOFF_CAP, BACKOFF_INITIAL, should_fallback, should_retry

    assert (BACKOFF_INITIAL, BACKOFF_CAP) == (1.0, 30.0)
    retried = [
        litellm.RateLimitError("slow", "openai", "gpt-4o"),
        litellm.Timeout("late", "gpt-4o", "openai"),
        litellm.APIConnectionError("down", "openai", "gpt-4o"),
        litellm.InternalServerError("500", "openai", "gpt-4o"),
        litellm.ServiceUnavailableError("503", "openai", "gpt-4o"),
        ResponseValidationError("bad"),
    ]
    assert all(should_retry(exc) for exc in retried)
    assert not any(should_fallback(exc) for exc in retried[:-1])
    fallen = [
        litellm.NotFoundError("nope", "openai", "gpt-4o"),
        litellm.AuthenticationError("key", "openai", "gpt-4o"),
        litellm.ContextWindowExceededError("long", "gpt-4o", "openai"),
        litellm.ContentPolicyViolationError("policy", "gpt-4o", "openai"),
        ModelRefusalError("no", model="m", finish_reason="content_filter"),
        litellm.BadRequestError("Too much media in this request", "gpt-4o", "openai"),
    ]
    assert all(should_fallback(exc) for exc in fallen)
    assert not any(should_retry(exc) for exc in fallen)
    plain = litellm.BadRequestError("temperature must be <= 2", "gpt-4o", "openai")
    assert not should_retry(plain)
    assert not should_fallback(plain)
    assert not should_retry(ValueError("ours"))
    assert not should_fallback(ValueError("ours"))


def test_utils() -> None:
    from lmi.utils import (
        encode_image_as_url,
        get_litellm_retrying_config,
        is_encoded_image,
        partial_format,
    )

    assert get_litellm_retrying_config() == {"num_retries": 3, "timeout": 60.0}
    assert get_litellm_retrying_config(5.0) == {"num_retries": 3, "timeout": 5.0}
    assert partial_format("{a} and {b}", a=1) == "1 and {b}"
    url = encode_image_as_url("png", b"\x89PNG")
    assert url == "data:image/png;base64,iVBORw=="
    assert is_encoded_image(url)
    assert not is_encoded_image("https://example.com/cat.png")


async def test_gather_with_concurrency_bounds_and_keeps_order() -> None:
    import asyncio

    from lmi.utils import gather_with_concurrency

    running, peak = 0, 0

    async def job(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - i % 5))
        running -= 1
        return i

    assert await gather_with_concurrency(3, [job(i) for i in range(10)]) == list(range(10))
    assert peak == 3


def test_configure_llm_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm

    from lmi.utils import configure_llm_logs

    monkeypatch.setenv("LITELLM_LOG", "ERROR")
    configure_llm_logs()
    assert litellm.telemetry is False
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("lmi").level == logging.WARNING
    monkeypatch.setenv("LITELLM_LOG", "DEBUG")
    configure_llm_logs()
    assert logging.getLogger("lmi").level == logging.INFO
    logging.getLogger("lmi").setLevel(logging.NOTSET)


def test_session_ids_and_embeddable() -> None:
    from lmi import Embeddable, LLMResult
    from lmi.types import cvar_session_id, set_llm_session_ids

    session = uuid.uuid4()
    assert LLMResult(model="m").session_id is None
    with set_llm_session_ids(session):
        assert cvar_session_id.get() == session
        assert LLMResult(model="m").session_id == session
    assert cvar_session_id.get() is None
    assert LLMResult(model="m", answer_id=session).session_id == session  # the alias
    assert Embeddable().embedding is None
    assert Embeddable(embedding=[0.5]).embedding == [0.5]


def test_compat_modules_do_not_import_litellm() -> None:
    code = textwrap.dedent(
        """
        import sys
        import lmi, lmi.cost_tracker, lmi.utils, lmi.constants, lmi.retry, lmi.version
        import lmi.llms, lmi.types, lmi.embeddings
        print("litellm" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_survive_pickling() -> None:
    import pickle

    from lmi.exceptions import AllModelsExhaustedError, ModelRefusalError

    cause = ValueError("boom")
    exhausted = pickle.loads(pickle.dumps(AllModelsExhaustedError(cause, attempts=[("m", cause)])))
    assert str(exhausted.last_exc) == "boom"
    assert [(model, str(exc)) for model, exc in exhausted.attempts] == [("m", "boom")]
    assert "m: ValueError: boom" in str(exhausted)
    refusal = pickle.loads(pickle.dumps(ModelRefusalError("no", model="m", finish_reason="content_filter")))
    assert (str(refusal), refusal.model, refusal.finish_reason) == ("no", "m", "content_filter")


def test_star_import_of_the_rate_limiter_has_fhlmis_names() -> None:
    namespace: dict[str, object] = {}
    exec("from lmi.rate_limiter import *", namespace)
    assert {"RATE_CONFIG", "GLOBAL_LIMITER", "GlobalRateLimiter", "MATCH_ALL"} <= set(namespace)


def test_public_submodules_are_attributes_after_a_bare_import() -> None:
    code = (
        "import lmi\n"
        "print(lmi.config.LLMConfig.__name__, lmi.utils.configure_llm_logs.__name__)\n"
        "print(sorted(n for n in ('config', 'utils', 'llms') if n in dir(lmi)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["LLMConfig configure_llm_logs", "['config', 'llms', 'utils']"]
