"""The cl100k_base tokenizer, built offline from the copy of its ranks that litellm ships.

``tiktoken.get_encoding("cl100k_base")`` downloads the ranks unless ``TIKTOKEN_CACHE_DIR`` points at a
copy; litellm sets that variable for the whole process when it is imported. We want neither a download
nor a process-wide environment change, so the encoding is built directly from litellm's bundled file
(checked against tiktoken's published hash), found without importing litellm.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# Fixed facts of the encoding, as tiktoken_ext.openai_public defines them (a test checks they agree).
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

_lock = threading.Lock()
_encoding: tiktoken.Encoding | None = None


def bundled_cl100k_path() -> Path | None:
    """litellm's copy of the cl100k_base ranks (named as tiktoken's cache names it), if installed."""
    spec = importlib.util.find_spec("litellm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    cache_key = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    for location in spec.submodule_search_locations:
        path = Path(location) / "litellm_core_utils" / "tokenizers" / cache_key
        if path.is_file():
            return path
    return None


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """tiktoken's ``.tiktoken`` format: one ``<base64 token> <rank>`` per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _build_cl100k() -> tiktoken.Encoding:
    import tiktoken

    path = bundled_cl100k_path()
    if path is None:
        # No bundled copy: tiktoken's own loader (its cache, else a download).
        return tiktoken.get_encoding("cl100k_base")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError(f"{path} does not hold the cl100k_base ranks (hash mismatch)")
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=parse_ranks(data),
        special_tokens=CL100K_SPECIAL_TOKENS,
    )


def cl100k() -> tiktoken.Encoding:
    """The cl100k_base encoding, built once per process on first use (thread-safe)."""
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                _encoding = _build_cl100k()
    return _encoding
