"""Embedding tests run offline: Hugging Face libraries must never reach for the hub."""

from __future__ import annotations

import os

# Read by huggingface_hub/transformers when they are first imported, which happens in these tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
