"""Memory: RSS over 10,000 sequential calls through lmi, side by side with litellm called directly.

    python bench/memory_soak.py                      # plain and streaming, 10,000 calls each
    python bench/memory_soak.py --mode plain --calls 2000

For each mode, lmi (``LiteLLMModel.call_single``) and litellm (``litellm.acompletion`` with the same
arguments, see ``chat_cpu.py``) each run in their own fresh process against the loopback server: a warm-up
of 500 calls, then ``--calls`` sequential calls, RSS read every 1,000. Growth is the last reading minus
the one right after warm-up; the target is <= 5 MB for lmi. lmi uses its default transport (native for this
OpenAI model, so it never imports litellm); its final RSS should be at most half of litellm's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import rss_mb, server_process

WARM_UP_CALLS = 500
CHECKPOINT_EVERY = 1000


async def soak(target: str, root: str, stream: bool, calls: int) -> list[float]:
    """RSS (MB) after warm-up, then every CHECKPOINT_EVERY calls."""
    from chat_cpu import litellm_call, lmi_call

    call = lmi_call(root, stream) if target == "lmi" else litellm_call(root, stream)
    for _ in range(WARM_UP_CALLS):
        await call()
    readings = [rss_mb()]
    for done in range(1, calls + 1):
        await call()
        if done % CHECKPOINT_EVERY == 0 or done == calls:
            readings.append(rss_mb())
    return readings


def run_worker(target: str, root: str, mode: str, calls: int) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--worker", target, "--root", root, "--mode", mode]
    return subprocess.Popen([*command, "--calls", str(calls)], stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--mode", choices=["plain", "stream", "both"], default="both")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--worker", choices=["lmi", "litellm"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # one soak in this fresh process; print the readings as JSON
        readings = asyncio.run(soak(args.worker, args.root, args.mode == "stream", args.calls))
        print(json.dumps(readings))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    with server_process() as root:
        for mode in ["plain", "stream"] if args.mode == "both" else [args.mode]:
            # Both processes at once: RSS does not depend on sharing the CPU, and it halves the wait.
            workers = {target: run_worker(target, root, mode, args.calls) for target in ("lmi", "litellm")}
            results = {}
            for target, process in workers.items():
                stdout, _ = process.communicate()
                if process.returncode:
                    raise SystemExit(f"{target} soak failed")
                results[target] = json.loads(stdout.strip().splitlines()[-1])
            print(f"{mode}: {args.calls} sequential calls after {WARM_UP_CALLS} warm-up calls")
            for target, readings in results.items():
                growth = readings[-1] - readings[0]
                trace = " ".join(f"{r:.1f}" for r in readings)
                start, end = readings[0], readings[-1]
                print(f"  {target:8s} RSS {start:.1f} -> {end:.1f} MB, growth {growth:+.1f} MB")
                print(f"           every {CHECKPOINT_EVERY} calls: {trace}")
            print(f"  -> lmi growth {results['lmi'][-1] - results['lmi'][0]:+.1f} MB (target <= 5)")
            share = results["lmi"][-1] / results["litellm"][-1]
            print(f"  -> lmi RSS / litellm RSS after the soak: {share:.2f} (target <= 0.5, native transport)")


if __name__ == "__main__":
    main()
