"""CPU per chat call: ``LiteLLMModel.call_single`` against ``litellm.acompletion`` with the same arguments.

    python bench/chat_cpu.py                 # plain, streaming: 30 rounds of 100 calls a side, 32 at once
    python bench/chat_cpu.py --mode plain --calls 1000 --rounds 10
    python bench/chat_cpu.py --self-check    # litellm against itself: the bench's own bias and noise
    python bench/chat_cpu.py --transport litellm   # lmi on its litellm transport (the wrapper's overhead)

A loopback OpenAI-compatible server (``_server.py``) runs in a separate process and answers with a
recorded real response, so only this process's CPU time (``time.process_time``: every thread, including
litellm's logging workers) is measured. Each round runs a batch of calls through lmi and the same number
straight through litellm, in alternating order; the figure is the median of the per-round CPU ratios.

The direct litellm call gets exactly what lmi sends: model, api_base, api_key, n=1, the messages as
dicts and max_retries=0 (plus ``stream=True, stream_options={"include_usage": True}`` when streaming,
iterating every chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import PLAIN_RECORDING, STREAM_RECORDING, server_process, summarize
from lmi import LiteLLMModel
from lmi._lazy import litellm

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench"
# The recorded prompt, so the served answer is the one a real provider gave to it.
PLAIN_MESSAGES = [
    {"role": "system", "content": "Respond with single words."},
    {"role": "user", "content": "What is the meaning of the universe?"},
]
STREAM_MESSAGES = [{"role": "user", "content": "Say hello"}]

Call = Callable[[], Awaitable[object]]


TRANSPORT = "auto"  # lmi's config["transport"]: auto sends this OpenAI model natively
TARGETS = {("auto", False): 0.25, ("auto", True): 0.30, ("litellm", False): 1.05, ("litellm", True): 1.05}


def lmi_call(root: str, stream: bool) -> Call:
    recording = STREAM_RECORDING if stream else PLAIN_RECORDING
    config = {"api_base": f"{root}/{recording}/v1", "api_key": API_KEY, "transport": TRANSPORT}
    model = LiteLLMModel(name=MODEL, config=config)
    messages = STREAM_MESSAGES if stream else PLAIN_MESSAGES

    def on_text(delta: str) -> None:
        pass

    if stream:
        return lambda: model.call_single(messages, callbacks=[on_text])
    return lambda: model.call_single(messages)


def litellm_call(root: str, stream: bool) -> Call:
    acompletion = litellm().acompletion
    recording = STREAM_RECORDING if stream else PLAIN_RECORDING
    base = f"{root}/{recording}/v1"

    async def plain() -> object:
        return await acompletion(
            model=MODEL, api_base=base, api_key=API_KEY, n=1, messages=PLAIN_MESSAGES, max_retries=0
        )

    async def streamed() -> object:
        response = await acompletion(
            model=MODEL,
            api_base=base,
            api_key=API_KEY,
            n=1,
            messages=STREAM_MESSAGES,
            max_retries=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _chunk in response:
            pass
        return response

    return streamed if stream else plain


async def same_answer(root: str, stream: bool) -> str:
    """One untimed call each way: both must give the recorded answer, or the figures mean nothing."""
    ours = await lmi_call(root, stream)()
    recording = STREAM_RECORDING if stream else PLAIN_RECORDING
    request = {
        "model": MODEL,
        "api_base": f"{root}/{recording}/v1",
        "api_key": API_KEY,
        "messages": STREAM_MESSAGES if stream else PLAIN_MESSAGES,
        "max_retries": 0,
    }
    if stream:
        chunks = await litellm().acompletion(**request, stream=True)
        theirs = "".join([chunk.choices[0].delta.content or "" async for chunk in chunks if chunk.choices])
    else:
        theirs = (await litellm().acompletion(**request)).choices[0].message.content
    if str(ours) != theirs or not theirs:
        raise SystemExit(f"lmi answered {str(ours)!r}, litellm {theirs!r}: the bench is broken")
    return theirs


async def run_batch(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU seconds for ``calls`` calls, ``concurrency`` at a time: whole process (incl. the background
    work they cause in litellm's threads), and this (the event loop's) thread alone."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    gc.collect()  # a full collection of litellm's large heap would otherwise land in one side's round
    start, start_thread = time.process_time(), time.thread_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.sleep(0.1)  # let litellm's logging tasks and threads finish on this side's clock
    return time.process_time() - start, time.thread_time() - start_thread


async def compare(
    root: str, stream: bool, calls: int, rounds: int, concurrency: int, self_check: bool = False
) -> float:
    ours, reference = lmi_call(root, stream), litellm_call(root, stream)
    if self_check:  # litellm against itself: shows the bench's own bias and noise
        ours = litellm_call(root, stream)
    answer = await same_answer(root, stream)
    print(f"{'streaming' if stream else 'plain'}: both answer {answer!r}")
    per_round = max(calls // rounds, 1)
    await run_batch(ours, per_round, concurrency)  # warm-up: imports, clients, price lookups
    await run_batch(reference, per_round, concurrency)
    ours_cpu: list[tuple[float, float]] = []
    reference_cpu: list[tuple[float, float]] = []
    for index in range(rounds):
        if index % 2:
            reference_cpu.append(await run_batch(reference, per_round, concurrency))
            ours_cpu.append(await run_batch(ours, per_round, concurrency))
        else:
            ours_cpu.append(await run_batch(ours, per_round, concurrency))
            reference_cpu.append(await run_batch(reference, per_round, concurrency))
    label = "streaming" if stream else "plain"
    names = ("litellm (A)", "litellm (B)") if self_check else ("lmi", "litellm")
    ratios = [
        summarize(
            f"CPU per {label} call ({scope})",
            [c[which] / per_round for c in ours_cpu],
            [c[which] / per_round for c in reference_cpu],
            unit="ms",
            scale=1000,
            names=names,
        )
        for which, scope in enumerate(["process", "event-loop thread only"])
    ]
    return ratios[0]  # the figure: all of the process's CPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--mode", choices=["plain", "stream", "both"], default="both")
    parser.add_argument("--calls", type=int, default=3000, help="calls per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--self-check", action="store_true", help="time litellm against itself")
    parser.add_argument("--transport", choices=["auto", "native", "litellm"], default="auto")
    args = parser.parse_args()
    global TRANSPORT
    TRANSPORT = "auto" if args.transport == "native" else args.transport
    with server_process() as root:
        for stream in {"plain": [False], "stream": [True], "both": [False, True]}[args.mode]:
            ratio = asyncio.run(
                compare(root, stream, args.calls, args.rounds, args.concurrency, args.self_check)
            )
            goal = TARGETS[TRANSPORT, stream]
            target = "self-check, ideally 1.000" if args.self_check else f"target <= {goal:.2f}"
            print(f"  -> median ratio {ratio:.3f} ({target})")


if __name__ == "__main__":
    main()
