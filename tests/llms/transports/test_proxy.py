"""The native transport honours HTTP(S)_PROXY and NO_PROXY from the environment, as litellm's clients do."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.llms.helpers import openai_model, recorded
from tests.replay import ReplayServer

RECORDING = "openai-chat-0b8092"


class _Proxy(ThreadingHTTPServer):
    seen: list[str]


class _Forward(BaseHTTPRequestHandler):
    """A forward proxy for plain HTTP: absolute-form request line in, the origin's answer out."""

    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.server.seen.append(self.path)
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"proxy-connection", "host"}}
        origin = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        origin.request("POST", target.path, body=body, headers=headers)
        answer = origin.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        self.send_header("content-type", answer.getheader("content-type", "application/json"))
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        origin.close()


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy(("127.0.0.1", 0), _Forward)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_requests_go_through_the_proxy_in_the_environment(
    replay: ReplayServer, proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = proxy.server_address[:2]
    monkeypatch.setenv("HTTP_PROXY", f"http://{host}:{port}")
    for variable in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(variable, raising=False)
    llm = openai_model(replay, RECORDING, max_tokens=56, transport="native")

    result = await llm.call_single("hi")

    assert result.text == recorded(RECORDING)["body"]["choices"][0]["message"]["content"]
    assert proxy.seen == [f"{replay.openai_base(RECORDING)}/chat/completions"]
    assert len(replay.requests_for(RECORDING)) == 1


async def test_no_proxy_bypasses_it(
    replay: ReplayServer, proxy: _Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = proxy.server_address[:2]
    monkeypatch.setenv("HTTP_PROXY", f"http://{host}:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    llm = openai_model(replay, RECORDING, max_tokens=56, transport="native")
    await llm.call_single("hi")
    assert proxy.seen == []
    assert len(replay.requests_for(RECORDING)) == 1
