"""``lmi chat`` through the installed entry point, against recorded exchanges served on loopback.

Each of these runs pays litellm's import in a fresh process (~2.5 s), so there are few of them; the
credential checks are also tested in-process below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmi.cli._common import PLACEHOLDER_API_KEY, CLIError, check_credentials
from tests.cli.conftest import RunLmi, assert_one_line_error
from tests.llms.helpers import recorded, sse_events
from tests.replay import Fault, ReplayServer

SUMMARY = re.compile(
    r"^(?P<model>\S+): (?P<prompt>[\d,]+) prompt \+ (?P<completion>[\d,]+) completion tokens,"
    r" \$(?P<usd>[\d.,]+), [\d.]+ s$"
)


def summary_of(stderr: str) -> dict[str, str]:
    match = SUMMARY.match(stderr.strip().splitlines()[-1])
    assert match is not None, stderr
    return match.groupdict()


def listed_price(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """The call's price from litellm's own map, computed here without lmi's pricing code."""
    from lmi._lazy import litellm

    entry = litellm().model_cost[model]
    return prompt_tokens * entry["input_cost_per_token"] + completion_tokens * entry["output_cost_per_token"]


def test_streams_the_answer_then_prints_usage_and_cost(
    run_lmi: RunLmi, replay: ReplayServer, tmp_path: Path
) -> None:
    exchange = recorded("openai-chat-stream-29f559")
    events = sse_events(exchange)
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    usage = next(e["usage"] for e in events if e.get("usage"))
    answered_by = events[0]["model"]

    base = replay.openai_base("openai-chat-stream-29f559")
    result = run_lmi(
        "chat", "Say hello", "--model", "gpt-4o-mini", "--temperature", "1", "--api-base", base,
        unset=("OPENAI_API_KEY",), env={"LMI_COST_LEDGER": str(tmp_path / "costs.sqlite")},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout == text + "\n"
    summary = summary_of(result.stderr)
    assert summary["model"] == "gpt-4o-mini"
    assert int(summary["prompt"]) == usage["prompt_tokens"]
    assert int(summary["completion"]) == usage["completion_tokens"]
    expected_usd = listed_price(answered_by, usage["prompt_tokens"], usage["completion_tokens"])
    assert float(summary["usd"]) == pytest.approx(expected_usd, rel=5e-3)  # three significant digits
    [sent] = replay.requests_for("openai-chat-stream-29f559")
    assert sent.body["stream"] is True
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello"}]
    # No OPENAI_API_KEY in the environment: a local server gets a placeholder key, not a refusal.
    headers = {key.lower(): value for key, value in sent.headers.items()}
    assert headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"
    # With LMI_COST_LEDGER set, the call is in the ledger that `lmi cost` reads.
    ledger = run_lmi("cost", "--ledger", tmp_path / "costs.sqlite")
    assert ledger.returncode == 0, ledger.stderr
    [row] = [line.split() for line in ledger.stdout.splitlines() if line.startswith("gpt-4o-mini ")]
    assert row[1:3] == ["1", str(usage["prompt_tokens"])]
    assert row[5] == str(usage["completion_tokens"])


def test_plain_answer_with_system_message_and_prompt_from_stdin(
    run_lmi: RunLmi, replay: ReplayServer
) -> None:
    body = recorded("openai-chat-634cf7")["body"]
    request = recorded("openai-chat-634cf7")["request"]
    system, user = request["messages"]

    base = replay.openai_base("openai-chat-634cf7")
    result = run_lmi(
        "chat", "-", "--system", system["content"], "--no-stream", "--temperature", "0", "--max-tokens", "56",
        "--api-base", base,
        input=user["content"],
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout == body["choices"][0]["message"]["content"] + "\n"
    summary = summary_of(result.stderr)
    assert int(summary["prompt"]) == body["usage"]["prompt_tokens"]
    assert int(summary["completion"]) == body["usage"]["completion_tokens"]
    [sent] = replay.requests_for("openai-chat-634cf7")
    assert sent.body["messages"] == request["messages"]
    assert (sent.body["temperature"], sent.body["max_tokens"]) == (0, 56)
    assert "stream" not in sent.body or sent.body["stream"] is False


def test_a_provider_error_is_one_line(run_lmi: RunLmi, replay: ReplayServer) -> None:
    message = "Incorrect API key provided: sk-test"
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
    )
    replay.inject("openai-chat-634cf7", Fault(status=401, body=body, times=None))

    result = run_lmi("chat", "hello", "--api-base", replay.openai_base("openai-chat-634cf7"), "--no-stream")

    assert result.returncode == 1
    assert_one_line_error(result, message)
    assert result.stdout == ""


def test_missing_key_names_the_variable_and_exits_2(run_lmi: RunLmi) -> None:
    result = run_lmi("chat", "hello", "--model", "gpt-4o-mini", unset=("OPENAI_API_KEY",))
    assert result.returncode == 2
    assert_one_line_error(result, "OPENAI_API_KEY")


def test_unknown_model_is_one_line(run_lmi: RunLmi) -> None:
    result = run_lmi("chat", "hello", "--model", "no-such-model-xyz")
    assert result.returncode == 2
    assert_one_line_error(result, "no-such-model-xyz")
    assert result.stdout == ""  # litellm's own provider list must not leak to stdout


@pytest.mark.parametrize(
    ("model", "variable"),
    [("gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY")],
)
def test_missing_key_message(model: str, variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(CLIError, match=f"set {variable} in the environment") as raised:
        check_credentials(model, api_base=None)
    assert raised.value.exit_code == 2
    assert check_credentials(model, api_base="http://127.0.0.1:9/v1") == PLACEHOLDER_API_KEY
    monkeypatch.setenv(variable, "sk-present")
    assert check_credentials(model, api_base=None) is None


def test_a_provider_without_keys_is_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)  # litellm reports it missing; it has a default
    assert check_credentials("ollama/llama3", api_base=None) is None


def test_unknown_model_message() -> None:
    with pytest.raises(CLIError, match="openai/claude-2-typo"):
        check_credentials("claude-2-typo", api_base=None)


def test_help_names_the_default_model(capsys: pytest.CaptureFixture[str]) -> None:
    from lmi.cli import main
    from lmi.llms.config import DEFAULT_MODEL

    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    assert f"(default: {DEFAULT_MODEL})" in " ".join(capsys.readouterr().out.split())


def test_schema_file_must_be_a_json_object(tmp_path: Path) -> None:
    from lmi.cli.chat import load_schema

    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}}}))
    assert load_schema(path)["properties"] == {"name": {"type": "string"}}
    for text, fragment in [
        ("{", "not JSON"),
        ("[1]", "JSON list"),
        ('{"type": 5}', "not a valid JSON schema"),
    ]:
        path.write_text(text)
        with pytest.raises(CLIError, match=fragment):
            load_schema(path)
