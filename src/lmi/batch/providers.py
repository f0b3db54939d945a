"""The two batch APIs over HTTP: OpenAI's Batch API and Anthropic's Message Batches.

Each turns the same four operations (submit, poll, read results, cancel) into its provider's requests and
normalises what comes back: a :class:`BatchStatus` per poll and an :class:`Outcome` per item.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lmi.exceptions import LMIError

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)


class BatchAPIError(LMIError, RuntimeError):
    """A batch API answered with an error (or not at all); ``status`` is the HTTP status, 0 when none."""

    def __init__(self, provider: str, action: str, status: int, detail: str) -> None:
        self.provider, self.action, self.status = provider, action, status
        super().__init__(f"{provider} batch API: {action} failed (HTTP {status}): {detail}")

    @property
    def transient(self) -> bool:
        """Worth asking again later: a timeout, a rate limit or the server's own fault."""
        return self.status == 0 or self.status == 429 or self.status >= 500


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """One poll of a batch, in the provider-neutral terms the runner needs."""

    batch_id: str
    state: str  # the provider's own word: "in_progress", "finalizing", "ended", "expired", ...
    finished: bool  # the provider will not change this batch any more
    done: int  # items with an outcome so far
    total: int
    result_files: tuple[str, ...] = ()  # where the outcomes are (file ids or a URL)
    error: str | None = None  # why the whole batch failed, when it did


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one item: ``kind`` is succeeded, errored, expired or cancelled."""

    custom_id: str
    kind: str
    body: dict[str, Any] | None = None  # the provider's answer, when it succeeded
    error: str | None = None


def _openai_outcome(line: Mapping[str, Any]) -> Outcome:
    custom_id = str(line.get("custom_id"))
    response = line.get("response") or {}
    error = line.get("error")
    if response.get("status_code") == 200 and not error:
        return Outcome(custom_id, "succeeded", body=response.get("body"))
    if error:
        code, message = error.get("code"), error.get("message")
        kind = (
            "expired" if code == "batch_expired" else "cancelled" if code == "batch_cancelled" else "errored"
        )
        return Outcome(custom_id, kind, error=f"{code}: {message}")
    body = response.get("body") or {}
    detail = (body.get("error") or {}).get("message") if isinstance(body, Mapping) else None
    return Outcome(custom_id, "errored", error=f"HTTP {response.get('status_code')}: {detail or body}")


def _anthropic_outcome(line: Mapping[str, Any]) -> Outcome:
    custom_id = str(line.get("custom_id"))
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return Outcome(custom_id, "succeeded", body=result.get("message"))
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or result.get("error") or {}
        return Outcome(custom_id, "errored", error=f"{error.get('type')}: {error.get('message')}")
    return Outcome(custom_id, "cancelled" if kind == "canceled" else str(kind))


@dataclass
class BatchProvider:
    """How to reach one provider's batch API: its base URL and key, and the session to use."""

    name: ClassVar[str]
    max_requests: ClassVar[int]
    max_bytes: ClassVar[int]
    base_url: str
    api_key: str | None
    session: aiohttp.ClientSession = field(repr=False)

    async def _request(self, method: str, url: str, action: str, **kwargs: Any) -> bytes:
        import aiohttp

        # Uploads and result files can be large: bounded as a whole, unlike a chat request.
        timeout = aiohttp.ClientTimeout(total=300, sock_connect=30)
        try:
            async with self.session.request(
                method, url, headers=self._headers(), timeout=timeout, **kwargs
            ) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise BatchAPIError(self.name, action, response.status, _error_text(payload))
                return payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BatchAPIError(self.name, action, 0, f"{type(exc).__name__}: {exc} ({url})") from exc

    async def _json(self, method: str, url: str, action: str, **kwargs: Any) -> dict[str, Any]:
        payload = await self._request(method, url, action, **kwargs)
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise BatchAPIError(self.name, action, 200, f"not JSON: {payload[:200]!r}") from exc
        if not isinstance(data, dict):
            raise BatchAPIError(self.name, action, 200, f"not a JSON object: {payload[:200]!r}")
        return data

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def submit(self, items: list[tuple[str, dict[str, Any]]], job_id: str) -> str:
        """Create a batch of ``(custom_id, request body)`` items; return the provider's batch id."""
        raise NotImplementedError

    async def poll(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    async def outcomes(self, status: BatchStatus) -> list[Outcome]:
        """Every outcome a finished batch reported (a line that is not JSON is skipped, with a warning:
        its item then counts as missing from the results)."""
        outcomes = []
        for ref in status.result_files:
            payload = await self._request("GET", self._results_url(ref), "download the results")
            for number, line in enumerate(payload.decode(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    outcomes.append(self._outcome(json.loads(line)))
                except (ValueError, AttributeError) as exc:
                    logger.warning(
                        "%s batch %s: results line %d unreadable (%s)",
                        self.name,
                        status.batch_id,
                        number,
                        exc,
                    )
        return outcomes

    def _results_url(self, ref: str) -> str:
        raise NotImplementedError

    @staticmethod
    def _outcome(line: Mapping[str, Any]) -> Outcome:
        raise NotImplementedError

    async def cancel(self, batch_id: str) -> None:
        raise NotImplementedError


class OpenAIBatches(BatchProvider):
    """OpenAI's Batch API: upload a JSONL file, create the batch, poll it, download output and errors."""

    name = "openai"
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024
    _FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def submit(self, items: list[tuple[str, dict[str, Any]]], job_id: str) -> str:
        import aiohttp

        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body})
            for cid, body in items
        ]
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file", ("\n".join(lines) + "\n").encode(), filename=f"{job_id}.jsonl",
            content_type="application/jsonl",
        )  # fmt: skip
        uploaded = await self._json("POST", f"{self.base_url}/files", "upload the input file", data=form)
        created = await self._json(
            "POST",
            f"{self.base_url}/batches",
            "create the batch",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"lmi_job": job_id},
            },
        )
        return str(created["id"])

    async def poll(self, batch_id: str) -> BatchStatus:
        batch = await self._json("GET", f"{self.base_url}/batches/{batch_id}", "poll the batch")
        counts = batch.get("request_counts") or {}
        files = tuple(f for f in (batch.get("output_file_id"), batch.get("error_file_id")) if f)
        errors = (batch.get("errors") or {}).get("data") or []
        error = "; ".join(str(e.get("message", e)) for e in errors) or None
        return BatchStatus(
            batch_id=batch_id,
            state=str(batch.get("status")),
            finished=batch.get("status") in self._FINISHED,
            done=int(counts.get("completed") or 0) + int(counts.get("failed") or 0),
            total=int(counts.get("total") or 0),
            result_files=files,
            error=error,
        )

    def _results_url(self, file_id: str) -> str:
        return f"{self.base_url}/files/{file_id}/content"

    _outcome = staticmethod(_openai_outcome)

    async def cancel(self, batch_id: str) -> None:
        await self._json("POST", f"{self.base_url}/batches/{batch_id}/cancel", "cancel the batch")


class AnthropicBatches(BatchProvider):
    """Anthropic's Message Batches: create with every request inline, poll, stream the results file."""

    name = "anthropic"
    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024
    VERSION = "2023-06-01"

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    async def submit(self, items: list[tuple[str, dict[str, Any]]], job_id: str) -> str:
        requests = [{"custom_id": cid, "params": body} for cid, body in items]
        created = await self._json(
            "POST", f"{self.base_url}/v1/messages/batches", "create the batch", json={"requests": requests}
        )
        return str(created["id"])

    async def poll(self, batch_id: str) -> BatchStatus:
        batch = await self._json("GET", f"{self.base_url}/v1/messages/batches/{batch_id}", "poll the batch")
        counts = batch.get("request_counts") or {}
        total = sum(int(v or 0) for v in counts.values())
        url = batch.get("results_url")
        return BatchStatus(
            batch_id=batch_id,
            state=str(batch.get("processing_status")),
            finished=batch.get("processing_status") == "ended",
            done=total - int(counts.get("processing") or 0),
            total=total,
            result_files=(url,) if url else (),
        )

    def _results_url(self, url: str) -> str:
        return url

    _outcome = staticmethod(_anthropic_outcome)

    async def cancel(self, batch_id: str) -> None:
        await self._json("POST", f"{self.base_url}/v1/messages/batches/{batch_id}/cancel", "cancel the batch")


def _error_text(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    except ValueError:
        return payload[:200].decode(errors="replace")


PROVIDERS: dict[str, type[BatchProvider]] = {"openai": OpenAIBatches, "anthropic": AnthropicBatches}
DEFAULT_BASES = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def default_key(provider: str) -> str | None:
    return os.environ.get(KEY_ENVS[provider])
