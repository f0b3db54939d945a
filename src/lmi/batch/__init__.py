"""Batch APIs: many chat requests at half price, submitted, polled and collected across restarts.

- :mod:`lmi.batch.api`: ``call_batch`` (``LiteLLMModel.call_batch``), ``submit_batch``, ``collect_batch``,
  ``cancel_batch``.
- :mod:`lmi.batch.runner`: building items, splitting by the provider's limits, the poll/collect loop.
- :mod:`lmi.batch.providers`: OpenAI's Batch API and Anthropic's Message Batches over HTTP.
- :mod:`lmi.batch.wire`: request bodies and answers in each provider's wire format.
- :mod:`lmi.batch.store`: the SQLite file that makes a job resumable.
"""

from lmi.batch.api import batch_status, call_batch, cancel_batch, collect_batch, submit_batch
from lmi.batch.providers import BatchAPIError
from lmi.batch.store import BatchStore

__all__ = [
    "BatchAPIError",
    "BatchStore",
    "batch_status",
    "call_batch",
    "cancel_batch",
    "collect_batch",
    "submit_batch",
]
