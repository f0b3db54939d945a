"""CPU per chat call with opentelemetry-api installed but no provider configured, against without it.

    python bench/telemetry_cpu.py                    # 30 rounds of 100 calls a side, 32 at once
    python bench/telemetry_cpu.py --calls 1000 --rounds 10

"Without" is the same process with lmi told that opentelemetry cannot be imported (what a machine without
the ``otel`` extra sees); "with" is the API present and no tracer or meter provider set, so every call
asks OpenTelemetry for its providers and records nothing. Both sides call ``LiteLLMModel.call_single``
against a recorded answer served by a loopback server in another process, in alternating order; the
figure is the median of the per-round ratios of process CPU time (target: within 2 %).
"""

from __future__ import annotations

import argparse
import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import PLAIN_RECORDING, server_process, summarize
from chat_cpu import MODEL, PLAIN_MESSAGES, run_batch
from lmi import LiteLLMModel, telemetry


async def compare(root: str, calls: int, rounds: int, concurrency: int) -> float:
    import opentelemetry.trace  # noqa: F401  # the extra is installed: the "with" side really has it

    model = LiteLLMModel(
        name=MODEL, config={"api_base": f"{root}/{PLAIN_RECORDING}/v1", "api_key": "sk-bench"}
    )

    def side(installed: bool):  # type: ignore[no-untyped-def]
        async def call() -> object:
            telemetry._SETTINGS.missing = not installed
            return await model.call_single(PLAIN_MESSAGES)

        return call

    with_api, without = side(True), side(False)
    telemetry.instrument()
    if telemetry.active() is not None:
        raise SystemExit("a tracer or meter provider is configured: the bench measures the case without one")
    per_round = max(calls // rounds, 1)
    await run_batch(with_api, per_round, concurrency)  # warm-up: imports, clients, price lookups
    await run_batch(without, per_round, concurrency)
    with_cpu, without_cpu = [], []
    for index in range(rounds):
        order = [(with_api, with_cpu), (without, without_cpu)]
        for call, results in order if index % 2 else order[::-1]:
            results.append((await run_batch(call, per_round, concurrency))[0] / per_round)
    return summarize(
        "CPU per plain call (process)",
        with_cpu,
        without_cpu,
        unit="ms",
        scale=1000,
        names=("otel API, no provider", "no otel"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="calls per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with server_process() as root:
        ratio = asyncio.run(compare(root, args.calls, args.rounds, args.concurrency))
    print(f"  -> median ratio {ratio:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
