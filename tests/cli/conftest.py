"""Running the installed ``lmi`` command in a subprocess, with an environment that never leaves loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

# The loopback batch API server, for `lmi batch`.
from tests.batch.conftest import batch_server  # noqa: F401

# The redis-server of the rate limiter tests, reused for `lmi limits`.
from tests.rate_limiter.conftest import redis_server, redis_url  # noqa: F401

LMI = Path(sys.executable).with_name("lmi")
RunLmi = Callable[..., subprocess.CompletedProcess[str]]


def lmi_executable() -> str:
    if LMI.is_file():
        return str(LMI)
    found = shutil.which("lmi")
    if found is None:
        pytest.fail("the lmi entry point is not installed: pip install -e .")
    return found


def base_env() -> dict[str, str]:
    """This environment minus anything that would change what lmi does, plus offline switches."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LMI_", "REDIS_URL"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key")
    env.setdefault("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    return env


@pytest.fixture
def run_lmi(tmp_path: Path) -> RunLmi:
    """``run_lmi(*args, input=None, env={...}, unset=(...))``: run ``lmi`` and capture its output."""
    executable = lmi_executable()

    def run(
        *args: str | Path,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        unset: tuple[str, ...] = (),
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        environment = base_env()
        environment.update(env or {})
        for key in unset:
            environment.pop(key, None)
        return subprocess.run(
            [executable, *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            env=environment,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A failed run that said why in one ``lmi: error:`` line and showed no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lmi: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]
