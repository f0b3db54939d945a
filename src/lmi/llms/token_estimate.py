"""What a chat request will be billed, estimated before it is sent, to reserve it in a token limit.

The prompt is counted with the offline cl100k tokenizer (plus the per-message framing providers add, and
a margin for tokenizers that split text finer); images by the provider's own formula from the image's
dimensions (read from the first bytes of a data URL, never from its base64 length); the completion is
``max_tokens`` (or ``max_completion_tokens``) per choice when given, else the largest completion this
process saw lately for the model (:class:`CompletionHistory`).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

# Framing per message and for the reply, as OpenAI documents it for its chat format.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
# cl100k counts a little under o200k, and Claude's tokenizer splits finer still; the margins keep the
# estimate above the bill. Anthropic also adds a system prompt of its own for extended thinking.
TEXT_MARGIN = 1.15
ANTHROPIC_TEXT_MARGIN = 1.3
ANTHROPIC_THINKING_OVERHEAD = 32
# Expected completion per choice when neither max_tokens was given nor any completion was seen yet.
DEFAULT_COMPLETION_TOKENS = 64
HISTORY_LENGTH = 16

# OpenAI's tile formula, per model family: (base tokens, tokens per 512 px tile). Checked in order.
_OPENAI_TILES: tuple[tuple[str, int, int], ...] = (
    ("gpt-4o-mini", 2833, 5667),
    ("computer-use", 65, 129),
    ("o1", 75, 150),
    ("o3", 75, 150),
    ("gpt-5", 70, 140),
    ("", 85, 170),  # gpt-4o, gpt-4.1, gpt-4.5, gpt-4-turbo and the rest
)
# OpenAI's patch formula (32 px patches, at most 1536), per model family: the multiplier.
_OPENAI_PATCHES: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)
_MAX_PATCHES = 1536
# Anthropic: images are scaled to at most 1568 px on the long edge and ~1.15 megapixels, then cost
# width * height / 750 tokens (about 1,600 at most).
_ANTHROPIC_LONG_EDGE = 1568
_ANTHROPIC_MAX_PIXELS = 1_150_000
# An image whose size cannot be read (a remote URL) counts as the largest the provider bills.
_UNKNOWN_SIZE = (2048, 2048)


def is_anthropic(model: str) -> bool:
    lowered = model.lower()
    return "claude" in lowered or lowered.startswith("anthropic/")


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, WebP or JPEG header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        png_width, png_height = struct.unpack(">II", data[16:24])
        return int(png_width), int(png_height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        gif_width, gif_height = struct.unpack("<HH", data[6:10])
        return int(gif_width), int(gif_height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if data[:2] == b"\xff\xd8":
        index = 2
        while index + 9 <= len(data):
            if data[index] != 0xFF:
                return None
            marker = data[index + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                index += 2
                continue
            length = int.from_bytes(data[index + 2 : index + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return width, height
            index += 2 + length
    return None


def _data_url_size(url: str) -> tuple[int, int] | None:
    """The size of a ``data:image/...;base64,`` URL's image, decoding only what the header needs."""
    if not url.startswith("data:"):
        return None
    payload = url.partition(",")[2]
    # PNG, GIF and WebP say their size in the first 30 bytes; JPEG after its metadata segments.
    for chars in (64, 65_536, len(payload)):
        head = payload[: chars - chars % 4]
        try:
            size = image_size(base64.b64decode(head))
        except (binascii.Error, ValueError):
            return None
        if size is not None or chars >= len(payload):
            return size
    return None


def openai_image_tokens(model: str, width: float, height: float, detail: str = "auto") -> int:
    lowered = model.lower()
    for family, multiplier in _OPENAI_PATCHES:
        if family in lowered:
            patches = math.ceil(width / 32) * math.ceil(height / 32)
            if patches > _MAX_PATCHES:  # scaled down to fit 1536 patches
                scale = math.sqrt(_MAX_PATCHES * 32 * 32 / (width * height))
                width, height = max(1, int(width * scale)), max(1, int(height * scale))
                patches = min(math.ceil(width / 32) * math.ceil(height / 32), _MAX_PATCHES)
            return math.ceil(patches * multiplier)
    base, per_tile = next((b, t) for family, b, t in _OPENAI_TILES if family in lowered)
    if detail == "low":
        return base
    if max(width, height) > 2048:  # fit within 2048 x 2048
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:  # then the shortest side to 768
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    return base + per_tile * math.ceil(width / 512) * math.ceil(height / 512)


def anthropic_image_tokens(width: int, height: int) -> int:
    scale = min(1.0, _ANTHROPIC_LONG_EDGE / max(width, height))
    scale = min(scale, math.sqrt(_ANTHROPIC_MAX_PIXELS / (width * height)))
    return math.ceil(width * scale * height * scale / 750)


def _image_part(part: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(url or base64 data URL, detail)`` of an image content part, in OpenAI's or Anthropic's shape."""
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, Mapping):
            return str(image.get("url") or ""), str(image.get("detail") or "auto")
        return str(image or ""), "auto"
    if kind == "image":
        source = part.get("source")
        if isinstance(source, Mapping) and source.get("type") == "base64":
            return f"data:{source.get('media_type')};base64,{source.get('data')}", "auto"
        return "", "auto"
    return None


def estimate_prompt_tokens(
    messages: Iterable[Mapping[str, Any]], model: str, extra_text: Iterable[str] = ()
) -> int:
    """Prompt tokens: texts (and ``extra_text``: tool definitions, schemas) plus images plus framing."""
    from lmi._tokenizer import cl100k

    encode = cl100k().encode_ordinary
    anthropic = is_anthropic(model)
    text_tokens = sum(len(encode(text)) for text in extra_text)
    image_tokens = 0
    count = 0
    for message in messages:
        count += 1
        content = message.get("content")
        if isinstance(content, str):
            text_tokens += len(encode(content))
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                image = _image_part(part)
                if image is None:
                    text_tokens += len(encode(str(part.get("text") or "")))
                    continue
                url, detail = image
                width, height = _data_url_size(url) or _UNKNOWN_SIZE
                image_tokens += (
                    anthropic_image_tokens(width, height)
                    if anthropic
                    else openai_image_tokens(model, width, height, detail)
                )
        for call in message.get("tool_calls") or ():
            text_tokens += len(encode(str(call)))
    margin = ANTHROPIC_TEXT_MARGIN if anthropic else TEXT_MARGIN
    return math.ceil(text_tokens * margin) + image_tokens + MESSAGE_OVERHEAD * count + REPLY_PRIMING


class CompletionHistory:
    """The largest completion (per choice) of the last few calls, per model: what a call without
    ``max_tokens`` is expected to produce."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[int]] = {}

    def expected(self, model: str) -> int:
        seen = self._seen.get(model)
        return max(seen) if seen else DEFAULT_COMPLETION_TOKENS

    def record(self, model: str, completion_tokens_per_choice: int) -> None:
        seen = self._seen.get(model)
        if seen is None:
            seen = self._seen[model] = deque(maxlen=HISTORY_LENGTH)
        seen.append(max(completion_tokens_per_choice, 1))


def _request_text(request: Mapping[str, Any]) -> list[str]:
    """Prompt text outside the messages: tool definitions and a requested JSON schema."""
    import json

    texts = []
    if request.get("tools"):
        texts.append(json.dumps(request["tools"]))
    response_format = request.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("json_schema"):
        texts.append(json.dumps(response_format["json_schema"]))
    return texts


def completion_budget(request: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` or ``max_tokens`` when the request sets one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def estimate_request_tokens(
    request: Mapping[str, Any], model: str, history: CompletionHistory, history_key: str | None = None
) -> int:
    """Prompt plus expected completion for every choice (``n``); ``model`` picks the tokenizer margins
    and image formula, ``history_key`` (default ``model``) the completions seen."""
    prompt = estimate_prompt_tokens(request.get("messages") or (), model, _request_text(request))
    if request.get("thinking") and is_anthropic(model):
        prompt += ANTHROPIC_THINKING_OVERHEAD
    choices = request.get("n") or 1
    per_choice = completion_budget(request) or history.expected(history_key or model)
    return prompt + per_choice * (choices if isinstance(choices, int) and choices > 0 else 1)
