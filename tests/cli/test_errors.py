"""Bad input ends in one ``lmi: error:`` line and a non-zero exit; ``--help`` loads nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import RunLmi, assert_one_line_error, base_env


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "not-json.json").write_text("{'type': 'object'")
    (tmp_path / "list.json").write_text(json.dumps([{"type": "object"}]))
    (tmp_path / "bad-schema.json").write_text(json.dumps({"type": "no-such-type"}))
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)))
    (tmp_path / "doc.txt").write_text("some text")
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["chat", "hi", "--json-schema", "not-json.json"], "not JSON"),
        (["chat", "hi", "--json-schema", "list.json"], "not a schema object"),
        (["chat", "hi", "--json-schema", "bad-schema.json"], "not a valid JSON schema"),
        (["chat", "hi", "--json-schema", "missing.json"], "missing.json"),
        (["chat", "   "], "prompt is empty"),
        (["chat", "hi", "--max-tokens", "0"], "--max-tokens"),
        (["embed", "missing.txt", "-m", "sparse"], "missing.txt"),
        (["embed", "binary.bin", "-m", "sparse"], "not UTF-8"),
        (["embed", "folder", "-m", "sparse"], "folder"),
        (["embed", "doc.txt", "-m", "sparse", "-o", "out.csv"], ".jsonl or .npy"),
        (["embed", "doc.txt", "-m", "sparse", "-o", "no/such/dir/out.npy"], "no/such/dir"),
        (["embed", "doc.txt", "-m", "sparse", "--batch-size", "-3"], "--batch-size"),
        (["cost", "--since", "last tuesday", "--ledger", "x.sqlite"], "bad --since"),
    ],
)
def test_bad_input_is_one_line(run_lmi: RunLmi, files: Path, args: list[str], fragment: str) -> None:
    result = run_lmi(*args)
    assert result.returncode == 2
    assert_one_line_error(result, fragment)
    assert result.stdout == ""


def test_empty_stdin_is_bad_input(run_lmi: RunLmi) -> None:
    assert_one_line_error(run_lmi("chat", "-", input=""), "nothing on stdin")
    assert_one_line_error(run_lmi("embed", "-", "-m", "sparse", input="\n\n"), "nothing to embed")


@pytest.mark.parametrize("how", ["flag before", "flag after", "environment"])
def test_debug_shows_the_traceback(run_lmi: RunLmi, how: str) -> None:
    args = ["cost", "--since", "whenever", "--ledger", "x.sqlite"]
    if how == "flag before":
        result = run_lmi("--debug", *args)
    elif how == "flag after":
        result = run_lmi(*args, "--debug")
    else:
        result = run_lmi(*args, env={"LMI_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("lmi: error: bad --since")


def test_help_is_fast_and_light(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from lmi.cli import main\n"
        "for argv in (['--help'], ['chat', '--help'], ['embed', '--help'], ['cost', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "heavy = ('litellm', 'aviary', 'numpy', 'tiktoken', 'redis', 'torch', 'pydantic')\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & set(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=base_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_entry_point_help(run_lmi: RunLmi) -> None:
    result = run_lmi("--help")
    assert result.returncode == 0
    for command in ("chat", "embed", "limits", "cost"):
        assert command in result.stdout
