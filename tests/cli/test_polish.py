"""The details a new user meets in the first hour with ``lmi``: version, help, how money and errors read."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmi.cost import format_usd
from tests.cli.conftest import RunLmi, assert_one_line_error, base_env, lmi_executable
from tests.cli.terminal import Terminal, needs_tmux
from tests.llms.helpers import recorded, sse_events
from tests.replay import ReplayServer

# $0, cents from $1 up, three significant digits below: $0.00000540, $0.0123, $0.500, $1,234.50
USD = re.compile(r"^\$(0|[1-9]\d{0,2}(,\d{3})*\.\d\d|0\.0*[1-9]\d\d)$")


def _significant(amount: float) -> float:
    return float(f"{amount:.2e}")


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.floats(min_value=0, max_value=1e7, allow_nan=False) | st.integers(0, 10**6).map(lambda n: n * 1e-9))
def test_one_usd_format_with_significant_digits(amount: float) -> None:
    shown = format_usd(amount)
    assert USD.match(shown), shown
    value = float(shown[1:].replace(",", ""))
    if amount == 0:
        assert shown == "$0"
    elif _significant(amount) < 1:
        assert value == pytest.approx(_significant(amount), rel=1e-9)  # exactly three digits, rounded
    else:
        assert value == pytest.approx(round(amount, 2), abs=0.006)


def test_version_and_help_of_every_chat_option(run_lmi: RunLmi) -> None:
    shown = run_lmi("--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"lmi {version('lmi')}\n"

    helped = run_lmi("chat", "--help").stdout
    for option in ("-t T, --temperature T", "--max-tokens N"):
        after = helped.split(option, 1)[1].splitlines()
        described = after[0].strip() or after[1].strip()
        assert described, helped
        assert not described.startswith("-"), helped


def test_costs_read_the_same_in_the_cost_table(run_lmi: RunLmi, tmp_path: Path) -> None:
    """A chat row and an embedding row of a few millionths of a cent: both in significant digits."""
    from lmi._lazy import litellm

    ledger = tmp_path / "costs.sqlite"
    prices = litellm().model_cost
    chat_cost = (
        9 * prices["gpt-4o-mini"]["input_cost_per_token"]
        + 10 * prices["gpt-4o-mini"]["output_cost_per_token"]
    )
    embed_cost = 14 * prices["text-embedding-3-small"]["input_cost_per_token"]
    write = (
        "import sys; from lmi.cost import GLOBAL_COST_TRACKER, enable_cost_ledger;"
        " from lmi.types import TokenUsage; enable_cost_ledger(sys.argv[1]);"
        " GLOBAL_COST_TRACKER.record('gpt-4o-mini',"
        f" TokenUsage(prompt_tokens=9, completion_tokens=10), {chat_cost!r});"
        f" GLOBAL_COST_TRACKER.record('text-embedding-3-small', TokenUsage(prompt_tokens=14), {embed_cost!r})"
    )
    subprocess.run([sys.executable, "-c", write, str(ledger)], check=True, env=base_env(), timeout=60)

    table = run_lmi("cost", "--ledger", ledger)
    assert table.returncode == 0, table.stderr
    cells = {
        line.split()[0]: line.split()[-1] for line in table.stdout.splitlines()[2:] if line[:1].isalnum()
    }
    expected = {
        "gpt-4o-mini": chat_cost,
        "text-embedding-3-small": embed_cost,
        "total": chat_cost + embed_cost,
    }
    assert set(cells) == set(expected), table.stdout
    for key, amount in expected.items():
        assert USD.match(cells[key]), table.stdout
        assert float(cells[key][1:]) == pytest.approx(_significant(amount), rel=1e-9), table.stdout


def test_errors_name_what_to_fix(run_lmi: RunLmi, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    refused = run_lmi("chat", "hi", "-m", "openai/local", "--api-base", closed, timeout=120)
    assert_one_line_error(refused, f"cannot connect to {closed}", "connection refused")

    typo = run_lmi("chat", "hi", "-m", "gpt-4o-mimi")
    assert_one_line_error(typo, "'gpt-4o-mimi'", "did you mean gpt-4o-mini")
    assert typo.stdout == ""

    bad_url = run_lmi("limits", "--redis", "notaurl:::")
    assert_one_line_error(bad_url, "notaurl:::", "port")
    assert "ValueError" not in bad_url.stderr
    assert bad_url.returncode == 2

    no_redis = run_lmi("limits", "--redis", closed.replace("http://", "").removesuffix("/v1"))
    line = assert_one_line_error(no_redis, "--redis")
    assert "fallback_to_memory" not in line  # a Python argument means nothing to a CLI user


def test_a_wrong_model_in_python_prints_nothing_to_stdout(tmp_path: Path) -> None:
    script = (
        "import asyncio\nfrom lmi import LiteLLMModel\n"
        "try:\n    asyncio.run(LiteLLMModel(name='not-a-model-xyz').call_single('hi'))\n"
        "except Exception as exc:\n    import sys; print(type(exc).__name__, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=base_env(), timeout=60
    )
    assert done.stdout == ""  # litellm's "Provider List" banner went to stdout
    assert done.stderr.strip().splitlines()[-1] in {"ModelCallError", "BadRequestError"}


@needs_tmux
def test_interrupted_lands_on_its_own_line(replay: ReplayServer, tmp_path: Path) -> None:
    exchange = "openai-chat-stream-29f559"
    first_words = "".join(
        c["delta"].get("content") or "" for e in sse_events(recorded(exchange))[:3] for c in e["choices"]
    ).strip()
    replay.stream_delay = 1.0  # a slow stream, to interrupt in the middle
    command = [
        lmi_executable(),
        "chat",
        "Say hello",
        "-m",
        "gpt-4o-mini",
        "--api-base",
        replay.openai_base(exchange),
    ]
    terminal = Terminal(command, env=base_env(), cwd=tmp_path)
    try:
        terminal.wait_for(lambda screen: first_words in screen)
        terminal.press("C-c")
        screen = terminal.wait_for(lambda screen: "[exit " in screen, timeout=30)
    finally:
        terminal.close()
    lines = [line.rstrip() for line in screen.splitlines()]
    assert "lmi: interrupted" in lines, screen
    assert "[exit 130]" in lines, screen
