"""``import lmi`` and building models stay light: heavy dependencies load on first use, not before.

Each check runs in a fresh interpreter, since this test process has long imported everything.
Timings live in ``bench/cold_start.py``; these tests only check what gets imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY_MODULES = ("litellm", "openai", "aviary", "tiktoken", "numpy", "redis", "limits", "torch")


def run_fresh(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it must print one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


REPORT = f"""
import json, sys
print(json.dumps({{
    "heavy": [name for name in {HEAVY_MODULES!r} if name in sys.modules],
    "lmi_modules": sorted(name for name in sys.modules if name.startswith("lmi.")),
    **globals().get("extra", {{}}),
}}))
"""


def test_import_lmi_loads_no_submodule_and_no_heavy_dependency() -> None:
    report = run_fresh("import lmi\n" + REPORT)
    assert report["heavy"] == []
    # Public names resolve on first access; importing the package alone loads none of its parts.
    assert report["lmi_modules"] == []


def test_building_models_loads_no_heavy_dependency() -> None:
    code = """
        import lmi
        from lmi import LiteLLMModel
        llm = LiteLLMModel(name="gpt-4o-mini")
        extra = {"llm": llm.name}
        try:
            from lmi import SparseEmbeddingModel
        except ImportError as exc:
            extra["sparse_missing"] = str(exc)
        else:
            extra["sparse"] = SparseEmbeddingModel().name
    """
    report = run_fresh(textwrap.dedent(code) + REPORT)
    if "sparse_missing" in report:
        pytest.skip(f"lmi.embeddings is not importable yet: {report['sparse_missing']}")
    assert report["llm"] == "gpt-4o-mini"
    assert report["sparse"] == "sparse"
    assert report["heavy"] == []
    assert "lmi.llms.litellm_model" in report["lmi_modules"]  # the model really was built


def test_every_public_name_resolves_without_heavy_dependencies() -> None:
    # LLMResponse is a union of litellm's own response classes: it cannot exist without litellm.
    code = """
        import lmi
        names = [name for name in lmi.__all__ if name != "LLMResponse"]
        missing = [name for name in names if getattr(lmi, name, None) is None]
        extra = {"missing": missing, "count": len(lmi.__all__)}
    """
    report = run_fresh(textwrap.dedent(code) + REPORT)
    assert report["missing"] == []
    assert report["count"] > 0
    assert report["heavy"] == []


def test_first_use_of_aviary_keeps_litellm_price_map_offline() -> None:
    # aviary imports litellm, which fetches its price map from the network at import unless told not to.
    env = {key: value for key, value in os.environ.items() if key != "LITELLM_LOCAL_MODEL_COST_MAP"}
    code = """
        import os
        from lmi._lazy import aviary_core
        aviary_core().Message(content="hi")
        extra = {"cost_map_env": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")}
    """
    report = run_fresh(textwrap.dedent(code) + REPORT, env=env)
    assert report["cost_map_env"] == "True"
    assert "litellm" in report["heavy"]
    assert "aviary" in report["heavy"]


def test_pricing_and_budgets_never_import_litellm() -> None:
    code = """
        import asyncio
        import lmi
        from lmi.cost import price_usage
        from lmi.cost.estimate import worst_case_chat_usd
        from lmi.types import TokenUsage

        bill = price_usage("gpt-4o-mini", TokenUsage(prompt_tokens=1000, completion_tokens=10))
        worst = worst_case_chat_usd("gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]})

        async def reserve():
            with lmi.cost_tracking_ctx(budget_usd=1.0) as block:
                await block.budget.settle(await block.budget.reserve(worst), bill.usd)
                return (await block.status()).spent_usd

        extra = {"cost": bill.usd, "priced": bill.priced, "worst": worst, "spent": asyncio.run(reserve())}
    """
    report = run_fresh(textwrap.dedent(code) + REPORT)
    assert report["heavy"] == []
    assert report["priced"] is True
    assert isinstance(report["cost"], float)
    assert report["cost"] > 0
    assert report["worst"] > report["cost"] / 100
    assert report["spent"] == pytest.approx(report["cost"], abs=2e-9)
