"""A loopback HTTP server that answers with recorded real provider exchanges.

Recordings live in ``tests/recordings/<name>.json`` (format in its README). A request to
``/<name>/<provider path>`` is answered with the exchange of ``<name>`` whose path matches and whose
request body is closest to the one received; every request is kept in ``received`` so tests can assert
on what was sent. Point LiteLLM at ``server.openai_base(name)`` or ``server.anthropic_base(name)``.

Faults for reliability tests are injected per recording name with :meth:`ReplayServer.inject`.

Run it alone (``python tests/replay.py --port 8765``) to serve benchmarks from another process.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).parent / "recordings"
_SKIPPED_HEADERS = {"content-length", "content-encoding", "transfer-encoding", "connection", "content-type"}


@dataclass
class Received:
    name: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when the request arrived (monotonic clock)


@dataclass
class Fault:
    """One injected misbehaviour, used ``times`` times (``None``: forever)."""

    status: int = 500
    body: str = '{"error": {"message": "injected fault", "type": "server_error"}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    cut_after_events: int | None = None  # serve the recording's stream, then drop the connection
    replay: bool = False  # after the delay, answer with the recording instead of ``status``/``body``
    times: int | None = 1
    content_type: str = "application/json"  # of ``body``, e.g. "text/html" for a proxy's error page
    drop: bool = False  # after the delay, reset the connection (RST) without answering
    event_delay: float | None = None  # seconds between stream events (a slow stream); else stream_delay
    stall_after_events: int | None = None  # serve this many stream events, then go silent ...
    stall: float = 0.0  # ... for this many seconds, then drop the connection
    rewrite: Callable[[str], str] | None = None  # answer with the recording's body passed through this
    chunk_bytes: int | None = None  # write the recorded body in pieces of this many bytes (mid-character
    chunk_delay: float = 0.0  # too), this many seconds apart: a trickled body


def load_recording(name: str) -> list[dict[str, Any]]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())["exchanges"]


def _texts(value: Any) -> str:
    """Every string under ``value``, joined: compares prompts across provider message shapes."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\x00".join(_texts(v) for k, v in sorted(value.items()) if k != "cache_control")
    if isinstance(value, list):
        return "\x00".join(_texts(v) for v in value)
    return ""


def _closeness(sent: Any, recorded: Any) -> float:
    if not isinstance(sent, dict) or not isinstance(recorded, dict):
        return 0.0
    score = 0.0
    for key in sent.keys() | recorded.keys():
        if sent.get(key) == recorded.get(key):
            score += 1
    if _texts(sent.get("messages")) == _texts(recorded.get("messages")):
        score += 10
    if _texts(sent.get("input")) == _texts(recorded.get("input")):
        score += 10
    if _texts(sent.get("system")) == _texts(recorded.get("system")):
        score += 2
    if bool(sent.get("stream")) == bool(recorded.get("stream")):
        score += 5  # a streamed request wants the recorded stream, a plain one the JSON answer
    return score


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, cancellations) are expected here, not errors."""


class ReplayServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, stream_delay: float = 0.0) -> None:
        self.stream_delay = stream_delay
        self.received: list[Received] = []
        self._faults: dict[str, list[Fault]] = defaultdict(list)
        self._uses: dict[tuple[str, int], int] = defaultdict(int)
        self._cache: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every request received
        self._httpd = _QuietServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def openai_base(self, name: str) -> str:
        return f"{self.url}/{name}/v1"

    def anthropic_base(self, name: str) -> str:
        return f"{self.url}/{name}"

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def inject(self, name: str, fault: Fault) -> None:
        with self._lock:
            self._faults[name].append(fault)

    def add_recording(self, name: str, exchanges: list[dict[str, Any]]) -> None:
        """Serve ``exchanges`` (e.g. a variant of a real recording) under ``name``, as if from a file."""
        with self._lock:
            self._cache[name] = exchanges

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self._faults.clear()
            self._uses.clear()

    def requests_for(self, name: str) -> list[Received]:
        return [r for r in self.received if r.name == name]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` requests were received (False on timeout); from async code use
        ``await asyncio.to_thread(server.wait_for_requests, count)``."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= count, timeout)

    # -- used by the handler ------------------------------------------------------------------------------

    def _take_fault(self, name: str) -> Fault | None:
        with self._lock:
            faults = self._faults.get(name)
            if not faults:
                return None
            fault = faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    faults.pop(0)
            return fault

    def _choose(self, name: str, path: str, body: Any) -> dict[str, Any] | None:
        with self._lock:
            if name not in self._cache:
                try:
                    self._cache[name] = load_recording(name)
                except FileNotFoundError:
                    return None
            candidates = [(i, e) for i, e in enumerate(self._cache[name]) if e["path"] == path]
            if not candidates:
                return None
            # Closest body first; among equals the least used, so repeated identical requests walk the
            # recording in order.
            index, exchange = max(
                candidates,
                key=lambda c: (_closeness(body, c[1]["request"]), -self._uses[(name, c[0])], -c[0]),
            )
            self._uses[(name, index)] += 1
            return exchange


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body in one segment: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            _, name, *rest = self.path.split("?")[0].split("/")
            path = "/" + "/".join(rest)
            if not path.startswith("/v1"):
                path = "/v1" + path
            with server._arrived:
                server.received.append(Received(name, path, body, dict(self.headers.items())))
                server._arrived.notify_all()

            fault = server._take_fault(name)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.drop:
                self._reset()
                return
            recorded = fault is not None and (
                fault.replay
                or fault.cut_after_events is not None
                or fault.stall_after_events is not None
                or fault.event_delay is not None
                or fault.rewrite is not None
                or fault.chunk_bytes is not None
            )
            if fault is not None and not recorded:
                self._send(fault.status, fault.content_type, fault.body.encode(), fault.headers)
                return
            exchange = server._choose(name, path, body)
            if exchange is None:
                message = json.dumps({"error": {"message": f"no recording for {name}{path}"}})
                self._send(404, "application/json", message.encode(), {})
                return
            headers = {k: v for k, v in exchange["headers"].items() if k.lower() not in _SKIPPED_HEADERS}
            response = exchange["response"]
            if fault is not None and fault.rewrite is not None:
                response = fault.rewrite(response)
            payload = response.encode()
            if exchange["content_type"].startswith("text/event-stream"):
                self._send_stream(exchange["status"], exchange["content_type"], payload, headers, fault)
            else:
                self._send(exchange["status"], exchange["content_type"], payload, headers, fault)

        def _send(
            self,
            status: int,
            content_type: str,
            payload: bytes,
            headers: dict[str, str],
            fault: Fault | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self._write(payload, fault)

        def _write(self, payload: bytes, fault: Fault | None) -> None:
            """Write ``payload`` at once, or trickled in the fault's pieces."""
            if fault is None or fault.chunk_bytes is None:
                self.wfile.write(payload)
                return
            for start in range(0, len(payload), fault.chunk_bytes):
                self.wfile.write(payload[start : start + fault.chunk_bytes])
                self.wfile.flush()
                if fault.chunk_delay:
                    time.sleep(fault.chunk_delay)

        def _reset(self) -> None:
            """Close the connection with a TCP reset, as a crashed proxy or a killed server would."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _send_stream(
            self, status: int, content_type: str, payload: bytes, headers: dict[str, str], fault: Fault | None
        ) -> None:
            events = [event + b"\n\n" for event in payload.split(b"\n\n") if event.strip()]
            cut = fault.cut_after_events if fault is not None else None
            stall_at = fault.stall_after_events if fault is not None else None
            if fault is not None and fault.event_delay is not None:
                pause = fault.event_delay
            else:
                pause = server.stream_delay
            self.send_response(status)
            self.send_header("content-type", content_type)
            if cut is None and stall_at is None:
                self.send_header("content-length", str(sum(len(e) for e in events)))
            else:
                self.send_header("content-length", str(len(payload) + 1000))  # promise more than we send
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            for number, event in enumerate(events):
                if cut is not None and number >= cut:
                    self.close_connection = True
                    return
                if fault is not None and stall_at is not None and number >= stall_at:
                    time.sleep(fault.stall)
                    self.close_connection = True
                    return
                self._write(event, fault)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)

    return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stream-delay", type=float, default=0.0)
    args = parser.parse_args()
    replay = ReplayServer(port=args.port, stream_delay=args.stream_delay)
    print(replay.url, flush=True)
    replay._httpd.serve_forever()
