"""``lmi batch``: submit (waiting or detached), status, collect, cancel, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.batch.servers import BatchServer
from tests.cli.conftest import RunLmi
from tests.replay import load_recording

FAST_POLLS = {"LMI_BATCH_POLL_INTERVAL": "0.01", "LMI_BATCH_MAX_POLL_INTERVAL": "0.05"}


def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = [
        '"Say hello"',
        '{"id": "q42", "messages": "What does 42 mean?", "temperature": 0}',
        '"PLEASE FAIL"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def recorded_text(name: str) -> str:
    text: str = json.loads(load_recording(name)[0]["response"])["choices"][0]["message"]["content"]
    return text


def test_submit_waits_and_writes_results(run_lmi: RunLmi, batch_server: BatchServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = run_lmi(
        "batch", "submit", prompts_file(tmp_path), "-m", "gpt-4o-mini", "-o", out,
        "--api-base", batch_server.openai_base, "--batch-dir", tmp_path / "state",
        env=FAST_POLLS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[0]["text"] == recorded_text("openai-chat-ea3a00")
    assert rows[1]["id"] == "q42"
    assert rows[1]["text"] == recorded_text("openai-chat-887c4f")
    assert rows[2]["kind"] == "errored"
    assert "refused" in rows[2]["error"]
    assert "2 answered, 1 failed" in done.stderr


def test_detach_status_collect(run_lmi: RunLmi, batch_server: BatchServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    batch_server.hold.set()
    submitted = run_lmi(
        "batch", "submit", prompts_file(tmp_path), "--detach", "--api-base", batch_server.openai_base,
        "--batch-dir", state,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert f"lmi batch collect {job_id}" in submitted.stderr

    listed = run_lmi("batch", "status", "--batch-dir", state)
    assert job_id in listed.stdout
    assert "running" in listed.stdout
    one = run_lmi("batch", "status", job_id[:10], "--batch-dir", state)
    assert one.returncode == 0, one.stderr
    assert "in_progress" in one.stdout
    assert "0/3" in one.stdout

    batch_server.hold.clear()
    out = tmp_path / "results.jsonl"
    collected = run_lmi("batch", "collect", job_id, "-o", out, "--batch-dir", state, env=FAST_POLLS)
    assert collected.returncode == 0, collected.stderr
    assert len(out.read_text().splitlines()) == 3
    assert len(batch_server.created()) == 1


def test_cancel_and_unknown_ids(run_lmi: RunLmi, batch_server: BatchServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    batch_server.hold.set()
    job_id = run_lmi(
        "batch", "submit", prompts_file(tmp_path), "--detach", "--api-base", batch_server.openai_base,
        "--batch-dir", state,
    ).stdout.strip()  # fmt: skip
    cancelled = run_lmi("batch", "cancel", job_id, "--batch-dir", state)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelling 1 batch" in cancelled.stderr
    [batch] = batch_server.created()
    assert batch.status == "cancelling"

    unknown = run_lmi("batch", "collect", "nope", "--batch-dir", state)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("lmi: error: No batch job 'nope'")
    assert "Traceback" not in unknown.stderr


def test_bad_prompt_files(run_lmi: RunLmi, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{not json\n')
    result = run_lmi("batch", "submit", bad, "--batch-dir", tmp_path)
    assert result.returncode == 2
    assert f"{bad}:2: not JSON" in result.stderr
    missing = run_lmi("batch", "submit", tmp_path / "missing.jsonl", "--batch-dir", tmp_path)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    gemini = tmp_path / "one.jsonl"
    gemini.write_text('"hi"\n')
    result = run_lmi("batch", "submit", gemini, "-m", "gemini/gemini-2.0-flash", "--batch-dir", tmp_path)
    assert result.returncode == 2
    assert "no batch API" in result.stderr
