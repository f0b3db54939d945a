"""``lmi embed`` through the installed entry point: local sparse vectors, and a provider on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import numpy as np

from lmi.embeddings import SparseEmbeddingModel
from tests.cli.conftest import RunLmi, assert_one_line_error
from tests.replay import Fault, ReplayServer, load_recording

SUMMARY = re.compile(r"^embedded (?P<count>[\d,]+) documents? with (?P<model>\S+): (?P<ndim>\d+) dimensions")


def summary_of(stderr: str) -> dict[str, str]:
    match = SUMMARY.match(stderr.strip().splitlines()[-1])
    assert match is not None, stderr
    return match.groupdict()


def sparse_vectors(texts: list[str]) -> list[list[float]]:
    return asyncio.run(SparseEmbeddingModel().embed_documents(texts))


def test_files_to_jsonl_match_the_library(run_lmi: RunLmi, tmp_path: Path) -> None:
    texts = {
        "a.txt": "The quick brown fox.\nJumps over the lazy dog.\n",
        "empty.txt": "",
        "c.md": "# Title\n\nü ∑",
    }
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"

    result = run_lmi("embed", *texts, "--model", "sparse", "--out", out)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["source"], row["index"]) for row in rows] == [(name, i) for i, name in enumerate(texts)]
    assert [row["embedding"] for row in rows] == sparse_vectors(list(texts.values()))
    assert summary_of(result.stderr) == {"count": "3", "model": "sparse", "ndim": "256"}
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a private temporary one


def test_lines_of_files_and_stdin_to_npy(run_lmi: RunLmi, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("first line\n\n   \nsecond line\nthird\n")
    stdin = "from stdin\n\nanother one\n"
    out = tmp_path / "vectors.npy"

    result = run_lmi(
        "embed", "notes.txt", "-", "--lines", "-m", "sparse", "-o", out, "--batch-size", "1", input=stdin
    )

    assert result.returncode == 0, result.stderr
    matrix = np.load(out)
    expected = sparse_vectors(["first line", "second line", "third", "from stdin", "another one"])
    assert matrix.shape == (5, 256)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == expected
    assert summary_of(result.stderr)["count"] == "5"


def test_jsonl_on_stdout_records_line_numbers(run_lmi: RunLmi) -> None:
    result = run_lmi("embed", "-", "-m", "sparse", input="alpha\n\nbeta\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["source"], row["index"], row["line"]) for row in rows] == [("-", 0, 1), ("-", 1, 3)]
    assert [row["embedding"] for row in rows] == sparse_vectors(["alpha", "beta"])


def test_provider_and_hybrid_vectors_come_from_the_recording(
    run_lmi: RunLmi, replay: ReplayServer, tmp_path: Path
) -> None:
    exchange = next(e for e in load_recording("openai-embeddings-495721") if len(e["request"]["input"]) == 4)
    words = exchange["request"]["input"]
    response = json.loads(exchange["response"])
    recorded = [item["embedding"] for item in sorted(response["data"], key=lambda item: item["index"])]
    out = tmp_path / "hybrid.npy"

    result = run_lmi(
        "embed", "-", "-m", "hybrid-text-embedding-3-small", "-o", out,
        "--api-base", replay.openai_base("openai-embeddings-495721"),
        input="\n".join(words), unset=("OPENAI_API_KEY",),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    matrix = np.load(out)
    dense = len(recorded[0])
    assert matrix.shape == (len(words), dense + 256)
    assert matrix[:, :dense].tolist() == recorded
    assert matrix[:, dense:].tolist() == sparse_vectors(words)
    assert f"{response['usage']['prompt_tokens']} tokens" in result.stderr
    [sent] = replay.requests_for("openai-embeddings-495721")
    assert sent.body["input"] == words


def test_a_failed_run_leaves_the_previous_output_untouched(
    run_lmi: RunLmi, replay: ReplayServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n")
    body = json.dumps({"error": {"message": "This model's maximum context length is 8192 tokens"}})
    replay.inject("openai-embeddings-495721", Fault(status=400, body=body, times=None))

    result = run_lmi(
        "embed", "-", "-m", "text-embedding-3-small", "-o", out,
        "--api-base", replay.openai_base("openai-embeddings-495721"), input="my\nname\n",
    )  # fmt: skip

    assert result.returncode == 1
    assert_one_line_error(result, "maximum context length")
    assert out.read_text() == "previous run\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left


def test_lines_split_at_lf_and_crlf_only(run_lmi: RunLmi, tmp_path: Path) -> None:
    # A form feed, U+2028, U+0085 and a lone CR are characters inside a line, not line breaks.
    lines = ["page one\x0cpage two", "left\u2028right", "next\x85line", "carriage\rreturn", "last"]
    (tmp_path / "odd.txt").write_bytes(
        (lines[0] + "\n" + lines[1] + "\r\n\r\n" + lines[2] + "\n" + lines[3] + "\r\n" + lines[4]).encode()
    )

    for source in ("odd.txt", "-"):
        stdin = (tmp_path / "odd.txt").read_bytes().decode() if source == "-" else None
        result = run_lmi("embed", source, "--lines", "-m", "sparse", input=stdin)

        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(row["index"], row["line"]) for row in rows] == [(0, 1), (1, 2), (2, 4), (3, 5), (4, 6)]
        assert [row["embedding"] for row in rows] == sparse_vectors(lines)
