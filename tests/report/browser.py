"""Headless Chromium for the report tests: a screenshot, the rendered DOM, and a PNG reader."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless browser: Debian's `chromium` package is not installed (.ci/run installs it)")


def run_chromium(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """One headless run on a fresh profile; loopback-free (a file: URL), bounded in time."""
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def screenshot(page: Path, out: Path, width: int, height: int) -> np.ndarray:
    run_chromium(page, out.parent / "profile-shot", f"--screenshot={out}", f"--window-size={width},{height}")
    return read_png(out.read_bytes())


def dump_dom(page: Path, profile: Path) -> str:
    return run_chromium(page, profile, "--dump-dom").stdout


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced RGB or RGBA PNG as a (height, width, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), "unsupported PNG layout"
    assert colour in (2, 6), "unsupported PNG colour type"
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8)
    rows = raw.reshape(height, width * channels + 1)
    image = np.zeros((height, width * channels), dtype=np.uint8)
    previous = np.zeros(width * channels, dtype=np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 2:  # up
            current = (line + previous) % 256
        else:  # sub, average, paeth: each byte depends on the one to its left
            current = _unfilter_row(int(kind), line, previous, channels)
        image[y] = current
        previous = current.astype(np.int32)
    return image.reshape(height, width, channels)


def _unfilter_row(kind: int, line: np.ndarray, previous: np.ndarray, channels: int) -> np.ndarray:
    out = [0] * len(line)
    up, raw = previous.tolist(), line.tolist()
    for i, value in enumerate(raw):
        left = out[i - channels] if i >= channels else 0
        upper_left = up[i - channels] if i >= channels else 0
        if kind == 1:
            predictor = left
        elif kind == 3:
            predictor = (left + up[i]) // 2
        else:
            estimate = left + up[i] - upper_left
            distances = (abs(estimate - left), abs(estimate - up[i]), abs(estimate - upper_left))
            predictor = (left, up[i], upper_left)[distances.index(min(distances))]
        out[i] = (value + predictor) % 256
    return np.array(out, dtype=np.int32)
