"""A pipeline killed with kill -9 half way resumes where it died: nothing answered is asked again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lmi.cost import usage_cost
from lmi.types import TokenUsage
from tests.cache.pipeline import prompt
from tests.llms.helpers import recorded

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1000
RECORDING = recorded("openai-chat-634cf7")["body"]


def answer(question: str) -> str:
    return f"Answer to: {question}"


class EchoServer(ThreadingHTTPServer):
    """Answers OpenAI chat requests with the recorded response, its text changed to depend on the prompt;
    logs every prompt it receives."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def take(self) -> list[str]:
        with self.lock:
            taken, self.received = self.received, []
        return taken

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request is expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        question = body["messages"][-1]["content"]
        server = self.server
        assert isinstance(server, EchoServer)
        with server.lock:
            server.received.append(question)
        response = json.loads(json.dumps(RECORDING))
        response["choices"][0]["message"]["content"] = answer(question)
        payload = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def pipeline(server: EchoServer, cache: Path, output: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "tests.cache.pipeline", server.base, str(cache), str(CALLS), str(output)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_killed_pipeline_resumes_without_asking_again(tmp_path: Path) -> None:
    server = EchoServer()
    cache, output = tmp_path / "cache.db", tmp_path / "results.json"
    try:
        first = pipeline(server, cache, output)
        assert first.stdout is not None
        answered = {int(first.stdout.readline()) for _ in range(CALLS // 2)}
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        first.stdout.close()
        asked_first = server.take()
        connection = sqlite3.connect(cache)
        stored = {key for (key,) in connection.execute("SELECT key FROM entries")}
        connection.close()
        assert len(stored) >= len(answered)  # every answer the pipeline received survived the kill

        second = pipeline(server, cache, output)
        second.communicate(timeout=300)
        assert second.returncode == 0
        asked_second = server.take()
    finally:
        server.shutdown()
        server.server_close()

    questions = [prompt(index) for index in range(CALLS)]
    assert not {prompt(index) for index in answered} & set(asked_second)
    assert len(asked_second) == len(set(asked_second)) == CALLS - len(stored)
    assert set(asked_first) | set(asked_second) == set(questions)
    usage = RECORDING["usage"]
    cost = usage_cost(
        "gpt-4o-mini",
        TokenUsage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]),
    )
    results = json.loads(output.read_text())
    clean = [[answer(q), usage["prompt_tokens"], usage["completion_tokens"], cost] for q in questions]
    assert [result[:4] for result in results] == clean
    assert sum(result[4] for result in results) == len(stored)  # the stored answers came from the cache
