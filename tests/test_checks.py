"""One rule for every config lmi takes: typos refused with a did-you-mean, types checked, limits parsed
where they are given, provider-specific keys passed through, and none of it importing litellm."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from lmi import LiteLLMEmbeddingModel, LiteLLMModel, SentenceTransformerEmbeddingModel
from lmi.rate_limiter import GlobalRateLimiter


def _entry(**params: object) -> dict[str, object]:
    return {"model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o-mini", **params}}]}


REFUSED = [
    # (how the config is built, what the message must say)
    (lambda: LiteLLMModel(config={"temprature": 0.2}), ["'temprature'", "Did you mean 'temperature'"]),
    (lambda: LiteLLMModel(config=_entry(temprature=0.2)), ["'temprature'", "Did you mean 'temperature'"]),
    (lambda: LiteLLMModel(config={"max-tokens": 5}), ["'max-tokens'", "Did you mean 'max_tokens'"]),
    (lambda: LiteLLMModel(config={"temperature": "hot"}), ["'temperature'", "a number", "'hot'"]),
    (lambda: LiteLLMModel(config=_entry(temperature="hot")), ["'temperature'", "a number", "'hot'"]),
    (lambda: LiteLLMModel(config=_entry(max_tokens=2.5)), ["'max_tokens'", "whole number", "2.5"]),
    (lambda: LiteLLMModel(config=_entry(n=0)), ["'n'", ">= 1", "got 0"]),
    (lambda: LiteLLMModel(config=_entry(stop=[1])), ["'stop'", "[1]"]),
    (lambda: LiteLLMModel(config={"model_list": [{"model_name": "m"}]}), ["'m'", "'litellm_params'"]),
    (lambda: LiteLLMModel(config={"rate_limit": {"gpt-4o-mini": "ten/minute"}}), ["'ten/minute'"]),
    (lambda: LiteLLMEmbeddingModel(config={"kwargz": {}}), ["'kwargz'", "Did you mean 'kwargs'"]),
    (lambda: LiteLLMEmbeddingModel(config={"rate_limit": "ten/minute"}), ["'rate_limit'", "'ten/minute'"]),
    (lambda: LiteLLMEmbeddingModel(config={"batch_size": "8"}), ["'batch_size'", "'8'"]),
    (
        lambda: SentenceTransformerEmbeddingModel(name="x", config={"devise": "cpu"}),
        ["Did you mean 'device'"],
    ),
]


@pytest.mark.parametrize(("build", "said"), REFUSED)
def test_bad_configs_are_refused_at_construction_naming_the_key(
    build: Callable[[], object], said: list[str]
) -> None:
    with pytest.raises(ValueError, match=re.escape(said[0])) as caught:
        build()
    for part in said:
        assert part in str(caught.value)


def test_every_config_shape_passes_provider_keys_and_checks_limits_where_given() -> None:
    provider = {"vertex_project": "p-1", "vertex_location": "eu", "aws_region_name": "us-east-1"}
    flat = LiteLLMModel(config={"name": "gpt-4o-mini", "temperature": 0.5, **provider})
    listed = LiteLLMModel(config=_entry(temperature=0.5, **provider))
    for llm in (flat, listed):
        assert dict(llm.settings.chain[0].params) == {"model": "gpt-4o-mini", "temperature": 0.5, **provider}

    limiter = GlobalRateLimiter(use_in_memory=True)
    limiter.rate_config[("client", "a")] = "10/minute"
    with pytest.raises(ValueError, match="'100 per fortnight'"):
        limiter.rate_config[("client", "b")] = "100 per fortnight"
    with pytest.raises(ValueError, match="'banana'"):
        limiter.rate_config.update({("client", "c"): "banana"})
    assert dict(limiter.rate_config) == {("client", "a"): "10/minute"}


def test_construction_does_not_import_litellm() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from lmi import LiteLLMEmbeddingModel, LiteLLMModel
        from lmi.rate_limiter import GlobalRateLimiter
        outcomes = []
        for build in (
            lambda: LiteLLMModel(config={"model_list": [{"model_name": "m",
                "litellm_params": {"model": "gpt-4o", "temprature": 1}}]}),
            lambda: LiteLLMModel(config={"name": "gpt-4o", "top_p": 0.5, "rate_limit": "9/minute"}),
            lambda: LiteLLMEmbeddingModel(config={"rate_limit": "5/minute", "kwargs": {}}),
            lambda: GlobalRateLimiter(rate_config={("a", "b"): "1/second"}),
        ):
            try:
                build()
                outcomes.append("ok")
            except ValueError:
                outcomes.append("refused")
        print(json.dumps({"outcomes": outcomes, "litellm": "litellm" in sys.modules}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"outcomes": ["refused", "ok", "ok", "ok"], "litellm": False}
