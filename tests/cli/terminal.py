"""Running ``lmi`` in a real terminal (a detached tmux pane) for what only a terminal shows.

Tests using it skip, saying why, when tmux is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="needs tmux to run lmi in a terminal (apt install tmux)")


class Terminal:
    """One command in a 160x40 tmux pane; the pane stays readable after the command exits."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        assert TMUX is not None
        self.session = f"lmi-test-{uuid.uuid4().hex[:8]}"
        script = cwd / f"{self.session}.sh"
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
        # The exit status is printed last so a test can wait for the end and read it. The shell traps
        # Ctrl-C (a trap, unlike ignoring it, is not inherited: the command still gets it) to live on.
        body = f'trap ":" INT\ncd {shlex.quote(str(cwd))}\n{shlex.join(command)}\necho "[exit $?]"\n'
        script.write_text(exports + body)
        self._tmux("new-session", "-d", "-s", self.session, "-x", "160", "-y", "40", f"sh {script}")
        self._tmux("set-option", "-t", self.session, "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=30)
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.session)  # with scrollback

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen) or time.monotonic() > deadline:
                return screen
            time.sleep(0.1)  # a terminal can only be watched by looking at it

    def press(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def close(self) -> None:
        self._tmux("kill-session", "-t", self.session)
