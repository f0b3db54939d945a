"""What a sentence-transformers model's files say before any weight is loaded: where they are, its size.

A model is a directory (given, or a snapshot in the Hugging Face cache) whose ``modules.json`` lists the
modules run in turn; its vector size is the last Pooling module's (times its pooling modes), or the last
Dense module's output. Everything here reads small JSON files: no torch, no network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HUB_ORGANIZATION = "sentence-transformers"  # sentence-transformers looks bare names up under it first
_POOLING_MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)


def hub_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub resolves it from the environment."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_ids(name: str) -> list[str]:
    """Hub repositories ``name`` may mean, in the order sentence-transformers tries them."""
    return [name] if "/" in name else [f"{HUB_ORGANIZATION}/{name}", name]


def _cached_snapshot(repo: str) -> Path | None:
    folder = hub_cache() / f"models--{repo.replace('/', '--')}"
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        revision = ""
    snapshot = folder / "snapshots" / revision if revision else None
    if snapshot is not None and snapshot.is_dir():
        return snapshot
    snapshots = (
        sorted((folder / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    )
    return snapshots[-1] if snapshots else None


def local_model_dir(name: str) -> Path | None:
    """The directory holding ``name``'s files on this machine (given or cached), else None."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    for repo in repo_ids(name):
        snapshot = _cached_snapshot(repo)
        if snapshot is not None:
            return snapshot
    return None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def vector_size(directory: Path) -> int | None:
    """The size of the vectors the model in ``directory`` makes, from its config files; None if unsure."""
    modules = _json(directory / "modules.json")
    if not isinstance(modules, list):  # a plain transformers model: mean pooling over its hidden states
        config = _json(directory / "config.json")
        hidden = (config.get("hidden_size") or config.get("d_model")) if isinstance(config, dict) else None
        return hidden if isinstance(hidden, int) else None
    size: int | None = None
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        config = _json(directory / str(module.get("path", "")) / "config.json") if kind else None
        if not isinstance(config, dict):
            continue
        if kind.endswith(".Pooling"):
            width = config.get("word_embedding_dimension")
            modes = sum(bool(config.get(mode)) for mode in _POOLING_MODES) or 1
            size = width * modes if isinstance(width, int) else None
        elif kind.endswith(".Dense"):
            out = config.get("out_features")
            size = out if isinstance(out, int) else None
    return size


__all__ = ["hub_cache", "local_model_dir", "repo_ids", "vector_size"]
