"""Cold start: a fresh interpreter importing lmi and building two models, against ``import litellm``.

    python bench/cold_start.py               # 15 interleaved rounds
    python bench/cold_start.py --importtime  # also list lmi's slowest imports (python -X importtime)

Each round starts both commands as new processes, in alternating order, and times them from spawn to
exit; the figure is the median of the per-round ratios. litellm gets ``LITELLM_LOCAL_MODEL_COST_MAP=True``
so that it reads its price map from disk instead of the network, as lmi makes it do. The lmi process also
reports its peak RSS and which heavy modules it imported (there should be none).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HEAVY_MODULES = ("litellm", "openai", "aviary", "tiktoken", "numpy", "redis", "limits", "torch")

LMI_SNIPPET = f"""
import lmi
from lmi import LiteLLMModel, SparseEmbeddingModel
LiteLLMModel(name="gpt-4o-mini")
SparseEmbeddingModel()
import json, resource, sys
print(json.dumps({{
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "heavy": [m for m in {HEAVY_MODULES!r} if m in sys.modules],
}}))
"""
LITELLM_SNIPPET = "import litellm"
EMPTY_SNIPPET = "pass"


def timed_run(snippet: str, env: dict[str, str]) -> tuple[float, str]:
    """Seconds from spawning ``python -c snippet`` to its exit, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, done.stdout


def import_profile(env: dict[str, str], top: int) -> None:
    """The slowest cumulative imports under ``lmi`` (``python -X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", LMI_SNIPPET],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print(f"slowest imports (cumulative microseconds, top {top}):")
    for cumulative, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative:>8}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--importtime", action="store_true", help="list lmi's slowest imports")
    args = parser.parse_args()

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    timed_run(LITELLM_SNIPPET, env)  # warm the OS file cache for both sides
    timed_run(LMI_SNIPPET, env)

    lmi_times: list[float] = []
    litellm_times: list[float] = []
    empty_times: list[float] = []
    peaks: list[float] = []
    heavy: set[str] = set()
    for index in range(args.rounds):
        order = [LMI_SNIPPET, LITELLM_SNIPPET] if index % 2 == 0 else [LITELLM_SNIPPET, LMI_SNIPPET]
        for snippet in order:
            seconds, output = timed_run(snippet, env)
            if snippet is LMI_SNIPPET:
                lmi_times.append(seconds)
                report = json.loads(output)
                peaks.append(float(report["peak_rss_mb"]))
                heavy.update(report["heavy"])
            else:
                litellm_times.append(seconds)
        empty_times.append(timed_run(EMPTY_SNIPPET, env)[0])

    ratios = [a / b for a, b in zip(lmi_times, litellm_times, strict=True)]
    lmi_ms = statistics.median(lmi_times) * 1000
    print(
        f"import lmi + LiteLLMModel() + SparseEmbeddingModel(): {lmi_ms:.0f} ms; "
        f"import litellm: {statistics.median(litellm_times) * 1000:.0f} ms; "
        f"empty interpreter: {statistics.median(empty_times) * 1000:.0f} ms"
    )
    print(f"  -> median ratio lmi / litellm = {statistics.median(ratios):.3f} (target <= 0.100)")
    imported = ", ".join(sorted(heavy)) or "none"
    print(f"  -> lmi peak RSS {max(peaks):.1f} MB (target <= 70); heavy modules imported: {imported}")
    if args.importtime:
        import_profile(env, top=15)


if __name__ == "__main__":
    main()
