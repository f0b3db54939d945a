"""Loopback servers for OpenAI's Batch API and Anthropic's Message Batches.

Each follows its provider's documented wire format and state machine: OpenAI's batch goes validating →
in_progress → finalizing → completed (or failed, expired, cancelling → cancelled) with JSONL input and
output files; Anthropic's goes in_progress → ended (canceling on the way when cancelled) with a JSONL
results URL. A batch moves one state per poll, or stays in progress while ``hold`` is set. Each item is
answered with the recorded real response whose request is closest to the item (tests/recordings), so no
response is written by hand.

Run alone (``python -m tests.batch.servers --port N RECORDING...``) to serve a test's subprocess.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.replay import _closeness, load_recording

_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Batch:
    id: str
    provider: str
    items: list[dict[str, Any]]  # {"custom_id", "body"}
    status: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    errors: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom_id -> outcome line
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchServer:
    """Both batch APIs on one loopback port: OpenAI at ``/v1/...``, Anthropic at ``/v1/messages/...``."""

    def __init__(self, recordings: list[str], port: int = 0) -> None:
        self.exchanges = [
            exchange
            for name in recordings
            for exchange in load_recording(name)
            if exchange["status"] == 200 and not exchange["request"].get("stream")
        ]
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.hold = threading.Event()  # set: batches stay in progress
        self.expire_after: int | None = None  # answer this many items of a batch, then expire it
        self.fail_text = "PLEASE FAIL"  # an item whose prompt holds this gets a provider error
        self.extra_result = False  # add a result line for a custom_id nobody sent
        self.drop_result = False  # leave the last item out of the results
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> BatchServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def created(self) -> list[Batch]:
        return list(self.batches.values())

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- answering items ----------------------------------------------------------------------------------

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.fail_text in json.dumps(body):
            if path.endswith("/messages"):
                return 400, {"type": "invalid_request_error", "message": "prompt refused by the test server"}
            return 400, {
                "error": {"message": "prompt refused by the test server", "type": "invalid_request_error"}
            }
        candidates = [e for e in self.exchanges if e["path"] == path]
        best = max(candidates, key=lambda e: _closeness(body, e["request"]))
        return 200, json.loads(best["response"])

    def _finish(self, batch: Batch, cancelled: bool) -> None:
        """Answer the batch's items; those past ``expire_after`` (or all, when cancelled) get none."""
        answered = 0 if cancelled else len(batch.items)
        if self.expire_after is not None and not cancelled:
            answered = min(self.expire_after, len(batch.items))
        items = batch.items[: len(batch.items) - 1] if self.drop_result else batch.items
        for position, item in enumerate(items):
            cid = item["custom_id"]
            if batch.provider == "openai":
                batch.results[cid] = self._openai_line(item, position < answered)
            else:
                batch.results[cid] = self._anthropic_line(item, position < answered, cancelled)
        if self.extra_result and items:
            stray = dict(next(iter(batch.results.values())), custom_id="not-ours")
            batch.results["not-ours"] = stray

    def _openai_line(self, item: dict[str, Any], answered: bool) -> dict[str, Any]:
        line: dict[str, Any] = {"id": self._id("batch_req_"), "custom_id": item["custom_id"]}
        if not answered:
            message = "This request could not be executed before the completion window expired."
            return line | {"response": None, "error": {"code": "batch_expired", "message": message}}
        status, body = self._answer(item["url"], item["body"])
        return line | {
            "response": {"status_code": status, "request_id": self._id("req_"), "body": body},
            "error": None,
        }

    def _anthropic_line(self, item: dict[str, Any], answered: bool, cancelled: bool) -> dict[str, Any]:
        if not answered:
            return {
                "custom_id": item["custom_id"],
                "result": {"type": "canceled" if cancelled else "expired"},
            }
        status, body = self._answer("/v1/messages", item["params"])
        if status != 200:
            result = {"type": "errored", "error": {"type": "error", "error": body}}
        else:
            result = {"type": "succeeded", "message": body}
        return {"custom_id": item["custom_id"], "result": result}

    # -- OpenAI -------------------------------------------------------------------------------------------

    def openai_batch(self, batch: Batch) -> dict[str, Any]:
        done = sum(
            1 for r in batch.results.values() if r.get("response") and r["response"]["status_code"] == 200
        )
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors":
            {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": "file-in", "completion_window": "24h", "status": batch.status,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "request_counts": {"total": len(batch.items), "completed": done,
                               "failed": len(batch.results) - done if batch.results else 0},
            "metadata": None,
        }  # fmt: skip

    def advance_openai(self, batch: Batch) -> None:
        if batch.status == "validating":
            batch.status = "failed" if batch.errors else "in_progress"
        elif batch.status == "in_progress" and not self.hold.is_set():
            batch.status = "finalizing"
        elif batch.status == "finalizing":
            self._finish(batch, cancelled=False)
            batch.status = "expired" if self.expire_after is not None else "completed"
            self._write_openai_files(batch)
        elif batch.status == "cancelling":
            self._finish(batch, cancelled=True)
            batch.status = "cancelled"
            self._write_openai_files(batch)

    def _write_openai_files(self, batch: Batch) -> None:
        ok = [r for r in batch.results.values() if r.get("response") and r["response"]["status_code"] == 200]
        failed = [r for r in batch.results.values() if r not in ok]
        if ok:
            batch.output_file_id = self._id("file-out")
            self.files[batch.output_file_id] = "".join(json.dumps(r) + "\n" for r in ok).encode()
        if failed:
            batch.error_file_id = self._id("file-err")
            self.files[batch.error_file_id] = "".join(json.dumps(r) + "\n" for r in failed).encode()

    def validate_openai(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        errors, seen = [], set()
        for number, line in enumerate(lines, 1):
            cid = line.get("custom_id")
            problem = None
            if cid in seen:
                problem = f"Duplicate custom_id {cid!r}"
            elif line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                problem = "Each line must POST to /v1/chat/completions"
            elif (
                not isinstance(line.get("body"), dict)
                or "messages" not in line["body"]
                or "model" not in line["body"]
            ):
                problem = "The body must hold model and messages"
            seen.add(cid)
            if problem:
                errors.append({"code": "invalid_request", "message": problem, "param": None, "line": number})
        models = {line.get("body", {}).get("model") for line in lines}
        if len(models) > 1:
            errors.append({"code": "mismatched_model", "message": "A batch must use one model", "line": None})
        return errors

    # -- Anthropic ----------------------------------------------------------------------------------------

    def anthropic_batch(self, batch: Batch) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.status == "ended":
            for result in batch.results.values():
                kind = result["result"]["type"]
                counts[kind] = counts.get(kind, 0) + 1
        else:
            counts["processing"] = len(batch.items)
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status,
            "request_counts": counts, "created_at": "2026-11-30T00:00:00Z", "ended_at": None,
            "expires_at": "2026-12-01T00:00:00Z", "cancel_initiated_at": None, "archived_at": None,
            "results_url": (
                f"{self.url}/v1/messages/batches/{batch.id}/results" if batch.status == "ended" else None
            ),
        }  # fmt: skip

    def advance_anthropic(self, batch: Batch) -> None:
        if batch.status == "in_progress" and not self.hold.is_set():
            self._finish(batch, cancelled=False)
            batch.status = "ended"
        elif batch.status == "canceling":
            self._finish(batch, cancelled=True)
            batch.status = "ended"


def _handler_for(server: BatchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            if self.path.startswith("/v1/messages"):
                self._reply(
                    status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
                )
            else:
                self._reply(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            with server._lock:
                server.log.append(("GET", self.path))
                self._get()

        def do_POST(self) -> None:
            body = self._body()
            with server._lock:
                server.log.append(("POST", self.path))
                self._post(body)

        def _get(self) -> None:
            parts = self.path.strip("/").split("/")
            if parts[:2] == ["v1", "batches"] and len(parts) == 3:
                batch = server.batches.get(parts[2])
                if batch is None or batch.provider != "openai":
                    return self._error(404, f"No batch found with id '{parts[2]}'.")
                server.advance_openai(batch)
                return self._reply(200, server.openai_batch(batch))
            if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                if parts[2] not in server.files:
                    return self._error(404, f"No such File object: {parts[2]}")
                return self._reply(200, server.files[parts[2]], "application/octet-stream")
            if parts[:3] == ["v1", "messages", "batches"] and len(parts) >= 4:
                if self.headers.get("anthropic-version") is None:
                    return self._error(400, "anthropic-version: header is required")
                batch = server.batches.get(parts[3])
                if batch is None or batch.provider != "anthropic":
                    return self._error(404, f"Message batch {parts[3]} not found")
                if len(parts) == 5 and parts[4] == "results":
                    if batch.status != "ended":
                        return self._error(400, "Results are not available until processing ends")
                    lines = "".join(json.dumps(r) + "\n" for r in batch.results.values())
                    return self._reply(200, lines.encode(), "application/binary")
                server.advance_anthropic(batch)
                return self._reply(200, server.anthropic_batch(batch))
            return self._error(404, f"Unknown path {self.path}")

        def _post(self, raw: bytes) -> None:
            parts = self.path.strip("/").split("/")
            if parts == ["v1", "files"]:
                return self._upload(raw)
            if parts == ["v1", "batches"]:
                request = json.loads(raw)
                content = server.files.get(request.get("input_file_id", ""))
                if content is None:
                    return self._error(400, "input_file_id not found")
                if (
                    request.get("endpoint") != "/v1/chat/completions"
                    or request.get("completion_window") != "24h"
                ):
                    return self._error(400, "endpoint and completion_window '24h' are required")
                lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
                batch = Batch(server._id("batch_"), "openai", lines, "validating")
                batch.errors = server.validate_openai(lines)
                server.batches[batch.id] = batch
                return self._reply(200, server.openai_batch(batch))
            if parts[:2] == ["v1", "batches"] and parts[-1] == "cancel":
                batch = server.batches.get(parts[2])
                if batch is None:
                    return self._error(404, f"No batch found with id '{parts[2]}'.")
                if batch.status in {"validating", "in_progress", "finalizing"}:
                    batch.status = "cancelling"
                return self._reply(200, server.openai_batch(batch))
            if parts == ["v1", "messages", "batches"]:
                return self._create_anthropic(json.loads(raw))
            if parts[:3] == ["v1", "messages", "batches"] and parts[-1] == "cancel":
                batch = server.batches.get(parts[3])
                if batch is None:
                    return self._error(404, f"Message batch {parts[3]} not found")
                if batch.status == "in_progress":
                    batch.status = "canceling"
                return self._reply(200, server.anthropic_batch(batch))
            return self._error(404, f"Unknown path {self.path}")

        def _upload(self, raw: bytes) -> None:
            header = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
            fields = {
                part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
            }
            if fields.get("purpose") is None or fields["purpose"].get_content().strip() != "batch":
                return self._error(400, "purpose must be 'batch'")
            if "file" not in fields:
                return self._error(400, "file is required")
            file_id = server._id("file-")
            content = fields["file"].get_payload(decode=True)
            server.files[file_id] = content
            self._reply(
                200,
                {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(content),
                    "purpose": "batch",
                    "filename": fields["file"].get_filename(),
                    "created_at": int(time.time()),
                },
            )
            return None

        def _create_anthropic(self, request: dict[str, Any]) -> None:
            if self.headers.get("anthropic-version") is None:
                return self._error(400, "anthropic-version: header is required")
            requests = request.get("requests") or []
            ids = [r.get("custom_id") for r in requests]
            if not requests or len(set(ids)) != len(ids) or not all(_ANTHROPIC_ID.match(str(i)) for i in ids):
                return self._error(400, "requests need unique custom_ids matching ^[a-zA-Z0-9_-]{1,64}$")
            for r in requests:
                params = r.get("params") or {}
                missing = [k for k in ("model", "max_tokens", "messages") if k not in params]
                if missing:
                    return self._error(400, f"requests.{r['custom_id']}.params: {missing[0]}: Field required")
            batch = Batch(server._id("msgbatch_"), "anthropic", requests, "in_progress")
            server.batches[batch.id] = batch
            self._reply(200, server.anthropic_batch(batch))
            return None

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("recordings", nargs="+")
    args = parser.parse_args()
    server = BatchServer(args.recordings, port=args.port).start()
    print(server.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
