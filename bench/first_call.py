"""First call from a fresh process: ``import lmi``, build a model, ``call_single("hi")`` against loopback.

    python bench/first_call.py               # 7 interleaved rounds

Each round spawns fresh interpreters, in alternating order: lmi on the native transport, lmi on the
litellm transport, and ``lmi chat`` (timed to its first streamed byte on stdout). Times run from spawn to
the answer (targets: native <= 0.4 s, ``lmi chat`` first byte <= 0.5 s); each native process also reports
whether litellm or aviary were imported (they should not be).
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import time

from _common import PLAIN_RECORDING, STREAM_RECORDING, server_process

CALL = """
import asyncio, json, sys
import lmi
llm = lmi.LiteLLMModel(name="gpt-4o-mini", config={{"api_base": {base!r}, "api_key": "sk-bench",
                                                   "transport": {transport!r}}})
result = asyncio.run(llm.call_single("hi"))
assert result.text
print(json.dumps([m for m in ("litellm", "aviary", "openai") if m in sys.modules]), flush=True)
"""
CHAT = "from lmi.cli import main; raise SystemExit(main({argv!r}))"


def first_output(code: str, env: dict[str, str]) -> tuple[float, str]:
    """Seconds from spawning ``python -c code`` to its first byte on stdout, and its whole stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.select(timeout=60)
    first = time.perf_counter() - started
    out, _ = process.communicate(timeout=60)
    if process.returncode:
        raise SystemExit(f"failed: {code}")
    return first, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with server_process() as root:
        plain_base, stream_base = f"{root}/{PLAIN_RECORDING}/v1", f"{root}/{STREAM_RECORDING}/v1"
        sides = {
            "native": CALL.format(base=plain_base, transport="auto"),
            "litellm": CALL.format(base=plain_base, transport="litellm"),
            "lmi chat": CHAT.format(argv=["chat", "hi", "-m", "gpt-4o-mini", "--api-base", stream_base]),
        }
        times: dict[str, list[float]] = {side: [] for side in sides}
        imported: dict[str, str] = {}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))
            for side in order:
                seconds, out = first_output(sides[side], env)
                times[side].append(seconds)
                if side != "lmi chat":
                    imported[side] = out.strip().splitlines()[-1]
    for side, values in times.items():
        what = "first streamed byte" if side == "lmi chat" else "answer to the first call"
        heavy = f", heavy modules imported: {imported[side]}" if side in imported else ""
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{side}: {what} after {statistics.median(values):.3f} s (median; rounds {rounds}){heavy}")
    native, litellm = statistics.median(times["native"]), statistics.median(times["litellm"])
    print(f"  -> native {native:.3f} s (target <= 0.4), {litellm / native:.1f}x faster than the litellm path")
    print(f"  -> lmi chat first byte {statistics.median(times['lmi chat']):.3f} s (target <= 0.5)")


if __name__ == "__main__":
    main()
