"""`LiteLLMEmbeddingModel`: provider embeddings through litellm, batched, concurrent, in order."""

from __future__ import annotations

import asyncio
import base64
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator

from lmi import telemetry
from lmi._checks import Check, flag, integer, mapping, optional
from lmi._tokenizer import cl100k
from lmi.cache.spec import cache_for
from lmi.cache.store import CacheStore
from lmi.embeddings._model_info import accepts_dimensions, embedding_model_info
from lmi.embeddings._progress import progress_bar
from lmi.embeddings.base import EmbeddingBatchError, EmbeddingModel, check_texts, gather_all_or_cancel
from lmi.embeddings.router_config import ROUTER_KEYS, fold_router_keys
from lmi.exceptions import BudgetExceeded, ConfigurationError
from lmi.types import TokenUsage

if TYPE_CHECKING:
    from lmi.rate_limiter.reservation import Reservation

DEFAULT_CONCURRENCY = 16  # batches in flight at once per embed_documents call
BASE64_PROVIDERS = frozenset({"openai", "azure"})  # litellm providers asked for base64 vectors
BASE64_DUMP_WARNING = (
    r"Pydantic serializer warnings:\s+PydanticSerializationUnexpectedValue\(Expected `list\[float\]`"
    r"[^\n]*\[field_name='embedding', input_value='[A-Za-z0-9+/=.]*', input_type=str\]\)"
)


def _check_rate_limit(value: Any) -> None:
    """A limit (``"1000000/minute"``) or ``{model name: limit}``, parsed now so a bad one fails here."""
    from lmi.rate_limiter.parsing import parse_rate_limit  # imports `limits` only when a limit is set

    for limit in value.values() if isinstance(value, Mapping) else (value,):
        parse_rate_limit(limit)


# What fhlmi puts in a supplied config that has no "kwargs" (litellm's retries and a 120 s timeout).
FHLMI_DEFAULT_KWARGS: Mapping[str, Any] = {"num_retries": 3, "timeout": 120}


class LiteLLMEmbeddingModel(EmbeddingModel):
    """Any embedding model litellm reaches (``text-embedding-3-small``, ``azure/...``, ``voyage/...``).

    ``config`` keys, all optional:

    - ``kwargs``: passed to ``litellm.aembedding`` (``api_key``, ``api_base``, ``timeout``, ``num_retries``…);
    - ``transport``: ``"auto"`` (default: OpenAI embeddings sent natively, see :mod:`lmi.llms.transports`),
      ``"native"`` or ``"litellm"``; ``max_connections``: the native pool per event loop;
    - ``rate_limit``: tokens per period for this model (``"1000000/minute"``), charged per batch to
      ``GLOBAL_LIMITER`` under ``("client", name)`` right before the batch is sent (after budgets), and
      handed back when the request never reached the server, as for chat calls;
    - ``batch_size``: same as the argument, used when the argument is not given;
    - ``concurrency``: batches in flight at once (default 16);
    - ``progress``: ``True``/``False`` for a progress bar over batches (default: shown for long runs on a
      terminal when tqdm is installed);
    - ``cache``: a response cache (``True``, a path, ``sqlite:///...``, ``redis://...``; default: env
      ``LMI_CACHE``), one entry per text: a batch sends only the texts the cache lacks.

    ``ndim`` is inferred from the model when not given. When given, it is sent as ``dimensions`` (litellm
    maps it per provider), except to models of fixed size. Texts longer than the model's input limit are
    truncated to it, counting cl100k_base tokens (exact for OpenAI models, an estimate for others). Empty
    strings are not sent: providers reject them; each gets a zero vector.

    Models litellm reaches over OpenAI's API (``openai``, ``azure``) are asked for base64 vectors unless
    ``kwargs`` sets ``encoding_format``: float lists cost litellm ~3 ms of parsing per 1536-float vector,
    which would make large runs CPU-bound. Set ``"encoding_format": "float"`` for an OpenAI-compatible
    server that does not support base64.
    """

    name: str = "text-embedding-3-small"
    batch_size: int = Field(default=16, gt=0)
    embed_kwargs: dict[str, Any] = Field(default_factory=dict, repr=False)  # added to config["kwargs"]

    CONFIG_CHECKS: ClassVar[Mapping[str, Check]] = {
        "kwargs": mapping,
        "rate_limit": _check_rate_limit,
        "batch_size": integer(1),
        "concurrency": integer(1),
        "progress": optional(flag),
        "transport": lambda value: (
            None if value in ("auto", "native", "litellm") else "'auto', 'native' or 'litellm'"
        ),
        "max_connections": integer(1),
        "cache": lambda _: None,  # resolved (and refused with a reason) by lmi.cache.spec.cache_for
    }

    _send_dimensions: bool = PrivateAttr(default=False)
    _max_input_tokens: int | None = PrivateAttr(default=None)
    _prompt_tokens: int = PrivateAttr(default=0)
    _cost: float = PrivateAttr(default=0.0)
    _request: dict[str, Any] | None = PrivateAttr(default=None)
    _native: tuple[Any, Any] | None = PrivateAttr(default=None)  # (NativeTransport, Deployment) if native
    _cache: CacheStore | None = PrivateAttr(default=None)
    _cache_key_prefix: dict[str, Any] | None = PrivateAttr(default=None)
    _model: str = PrivateAttr(default="")  # the model sent (config["kwargs"]["model"], else name)

    @model_validator(mode="before")
    @classmethod
    def _config_from_fhlmi(cls, data: Any) -> Any:
        config = data.get("config") if isinstance(data, dict) else None
        if not isinstance(config, Mapping):
            return data
        if "kwargs" not in config:  # as fhlmi: a config given without kwargs gets its retrying defaults
            config = {**config, "kwargs": dict(FHLMI_DEFAULT_KWARGS)}
        if ROUTER_KEYS & config.keys():
            config = fold_router_keys(data.get("name") or cls.model_fields["name"].default, config)
        return {**data, "config": config}

    @model_validator(mode="before")
    @classmethod
    def _batch_size_from_config(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "batch_size" not in (data.get("config") or {}):
            return data
        from_config = data["config"]["batch_size"]
        if "batch_size" in data and data["batch_size"] != from_config:
            raise ConfigurationError(
                f"batch_size={data['batch_size']} and config['batch_size']={from_config} disagree; give one"
            )
        return {**data, "batch_size": from_config}

    def model_post_init(self, context: Any, /) -> None:
        # kwargs["model"] (e.g. from a model_list deployment) is the model sent; name stays its label
        self._model = str((self.config.get("kwargs") or {}).get("model") or self.name)
        info = embedding_model_info(self._model)
        self._send_dimensions = self.ndim is not None and accepts_dimensions(self._model)
        if self.ndim is None:
            self.ndim = info.ndim
        self._max_input_tokens = info.max_input_tokens
        self._cache = cache_for(self.config.get("cache"), configured="cache" in self.config)

    @property
    def total_prompt_tokens(self) -> int:
        """Prompt tokens billed for this model object's calls so far."""
        return self._prompt_tokens

    @property
    def total_cost(self) -> float:
        """USD spent by this model object's calls so far (also recorded on ``GLOBAL_COST_TRACKER``)."""
        return self._cost

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        texts = check_texts(texts)
        sent_at = [index for index, text in enumerate(texts) if text]
        to_send = [texts[index] for index in sent_at]
        if self._cache is None:
            vectors = await self._embed_in_batches(to_send, sent_at)
        else:
            vectors = await self._embed_through_cache(self._cache, to_send, sent_at)
        if len(sent_at) == len(texts):
            return vectors
        return self._with_zero_vectors(len(texts), sent_at, vectors)

    async def _embed_in_batches(self, texts: list[str], positions: list[int]) -> list[list[float]]:
        """Vectors of ``texts`` (non-empty), sent in concurrent batches; ``positions`` name them in errors."""
        limit = self._rate_limit()
        token_counts: list[int] = []
        if limit is not None or self._needs_truncation(texts):
            texts, token_counts = await asyncio.to_thread(self._truncate, texts, limit is not None)
        starts = range(0, len(texts), self.batch_size)
        progress = progress_bar(len(starts), enabled=self.config.get("progress"), description=self.name)
        semaphore = asyncio.Semaphore(int(self.config.get("concurrency", DEFAULT_CONCURRENCY)))
        failed = False

        async def run(batch: int, start: int) -> list[list[float]]:
            nonlocal failed
            stop = min(start + self.batch_size, len(texts))
            async with semaphore:
                if failed:  # the run is lost: send nothing more (set before the failed batch's slot frees)
                    raise asyncio.CancelledError
                try:
                    weight = sum(token_counts[start:stop]) if limit is not None else 0
                    vectors = await self._embed_batch(texts[start:stop], limit, weight)
                except BudgetExceeded:  # nothing was sent: the caller's own limit, not a provider failure
                    failed = True
                    raise
                except Exception as exc:
                    failed = True
                    first, last = positions[start], positions[stop - 1]
                    raise EmbeddingBatchError(self.name, batch, len(starts), first, last, exc) from exc
            progress.update(1)
            return vectors

        try:
            batches = await gather_all_or_cancel([run(batch, start) for batch, start in enumerate(starts)])
        finally:
            progress.close()
        return [vector for vectors in batches for vector in vectors]

    async def _embed_through_cache(
        self, store: CacheStore, texts: list[str], positions: list[int]
    ) -> list[list[float]]:
        """Texts the cache (``config["cache"]`` or env ``LMI_CACHE``) has are not sent (lmi.cache)."""
        from lmi.cache.embeddings import cached_embeddings
        from lmi.cache.keys import embedding_key_prefix

        if self._cache_key_prefix is None:
            params = dict(self.config.get("kwargs") or {})  # not _request_kwargs(): that imports litellm
            if self._send_dimensions:
                params["dimensions"] = self.ndim
            params.pop("model", None)
            self._cache_key_prefix = embedding_key_prefix(self._model, params)
        vectors = await cached_embeddings(
            store,
            self._cache_key_prefix,
            texts,
            positions,
            self._embed_in_batches,
            model=self.name,
            spent=lambda: self._cost,
        )
        if vectors and self.ndim is None:
            self.ndim = len(vectors[0])
        return vectors

    def _rate_limit(self) -> Any:
        limit = self.config.get("rate_limit")
        return limit.get(self.name) if isinstance(limit, dict) else limit

    def _needs_truncation(self, texts: list[str]) -> bool:
        # A token spans at least one UTF-8 byte and a character at most four, so shorter texts fit.
        limit = self._max_input_tokens
        return limit is not None and any(len(text) * 4 > limit for text in texts)

    def _truncate(self, texts: list[str], count: bool) -> tuple[list[str], list[int]]:
        """Texts cut to the model's input limit, and their token counts when ``count`` (else [])."""
        encoding, limit = cl100k(), self._max_input_tokens
        if count:
            indices: Sequence[int] = range(len(texts))
        else:
            indices = [
                index for index, text in enumerate(texts) if limit is not None and len(text) * 4 > limit
            ]
        # One by one: tiktoken holds the GIL, so its batch encoder's thread pool would only add overhead.
        encoded = [encoding.encode_ordinary(texts[index]) for index in indices]
        counts = [len(ids) for ids in encoded] if count else []
        truncated = list(texts)
        for index, ids in zip(indices, encoded, strict=True):
            if limit is not None and len(ids) > limit:
                truncated[index] = encoding.decode(ids[:limit], errors="ignore")
                if count:
                    counts[index] = limit
        return truncated, counts

    async def _embed_batch(self, texts: list[str], rate_limit: Any, weight: int) -> list[list[float]]:
        kwargs = self._request_kwargs()
        with telemetry.traced_operation(
            "embeddings", self.name, kwargs.get("custom_llm_provider")
        ) as operation:
            try:
                vectors, usage, cost = await self._embed_request(texts, rate_limit, weight, kwargs)
            except BaseException as exc:
                if operation is not None:
                    operation.finish(error=exc)
                raise
            if operation is not None:
                operation.set(
                    {
                        "gen_ai.usage.input_tokens": usage.prompt_tokens,
                        "gen_ai.embeddings.dimension.count": len(vectors[0]),
                        "lmi.cost_usd": cost,
                    }
                )
                operation.finish(input_tokens=usage.prompt_tokens, cost=cost)
            return vectors

    async def _embed_request(
        self, texts: list[str], rate_limit: Any, weight: int, kwargs: dict[str, Any]
    ) -> tuple[list[list[float]], TokenUsage, float]:
        from lmi.cost import active_budgets, reserve_all, settle_budgets
        from lmi.cost.estimate import worst_case_embedding_usd
        from lmi.llms.limits import finish_settlement

        # Budgets first: a batch they refuse takes nothing from the rate limit and sends nothing.
        budgets = active_budgets()
        holds = None
        if budgets:
            with telemetry.waiting("budget", model=self.name):
                holds = await reserve_all(
                    budgets, worst_case_embedding_usd(self._model, texts), "An embedding batch"
                )
        reservation: Reservation | None = None

        async def charge() -> Reservation | None:
            # Right before the request is written (a transport's before_send): the transport counts it
            # again if the write comes late, and hands it back if the request never reached the server.
            nonlocal reservation
            if rate_limit is not None:
                from lmi.rate_limiter import GLOBAL_LIMITER

                with telemetry.waiting("rate_limit", rate_limit_key=f"client|{self.name}", weight=weight):
                    reservation = await GLOBAL_LIMITER.reserve(("client", self.name), rate_limit, weight)
            return reservation

        prompt_tokens: int | None
        try:
            if self._native is not None:
                transport, deployment = self._native
                raw, prompt_tokens = await transport.embed(
                    deployment, {"model": self._model, "input": texts, **kwargs}, charge
                )
                data: list[Any] = raw
            else:
                from lmi._lazy import litellm
                from lmi.llms.transports.litellm_clients import send_charged

                request = {"model": self._model, "input": texts, **kwargs}
                response = await send_charged(litellm().aembedding, request, "embedding", charge)
                data = response.data
                prompt_tokens = getattr(response.usage, "prompt_tokens", None)
        except BaseException:
            if holds is not None:
                await holds.release()
            if reservation is not None:  # nothing billed: the tokens go back (if not handed back already)
                await finish_settlement(reservation.cancel(), self.name)
            raise
        # Billed: recorded before anything about the answer can fail.
        usage, cost = await self._record_cost(texts, prompt_tokens)
        if reservation is not None:  # the estimate becomes what was billed (never raises)
            await finish_settlement(reservation.settle(usage.prompt_tokens), self.name)
        if holds is not None:
            await settle_budgets(holds, cost, self.name)
        vectors = [decode_vector(embedding) for embedding in vectors_by_index(data, len(texts))]
        size = len(vectors[0])
        if self.ndim is None:
            self.ndim = size
        if any(len(vector) != self.ndim for vector in vectors):
            raise ValueError(f"the provider returned {size}-dimensional vectors, expected ndim={self.ndim}")
        return vectors, usage, cost

    def _request_kwargs(self) -> dict[str, Any]:
        """What every batch passes to ``litellm.aembedding`` besides model and input; built once."""
        if self._request is None:
            kwargs = {**self.embed_kwargs, **(self.config.get("kwargs") or {})}
            kwargs.pop("model", None)  # self._model
            if self._send_dimensions:
                kwargs["dimensions"] = self.ndim
            self._native = _native_route(self._model, kwargs, self.config)
            if "encoding_format" not in kwargs and (
                self._native is not None or _speaks_openai(self._model, kwargs)
            ):
                # Float lists cost the client ~3 ms of parsing per 1536-float vector; base64 almost nothing.
                kwargs["encoding_format"] = "base64"
                if self._native is None:
                    _quiet_base64_dump_warning()
            self._request = kwargs
        return self._request

    async def _record_cost(self, texts: list[str], prompt_tokens: int | None) -> tuple[TokenUsage, float]:
        from lmi.cost import GLOBAL_COST_TRACKER, price_usage

        if prompt_tokens is None:  # no usage in the response: our own count is the best estimate
            counted = sum(len(cl100k().encode_ordinary(text)) for text in texts)
            usage = TokenUsage(prompt_tokens=counted, estimated=True)
        else:
            usage = TokenUsage(prompt_tokens=prompt_tokens)
        bill = price_usage(self._model, usage)
        self._prompt_tokens += usage.prompt_tokens
        self._cost += bill.usd
        await GLOBAL_COST_TRACKER.arecord(self.name, usage, bill.usd, priced=bill.priced)
        return usage, bill.usd

    def _with_zero_vectors(
        self, total: int, sent_at: list[int], vectors: list[list[float]]
    ) -> list[list[float]]:
        if self.ndim is None:
            raise ConfigurationError(
                f"cannot tell the vector size of {self.name!r} for empty texts: pass ndim explicitly"
            )
        result = [[0.0] * self.ndim for _ in range(total)]
        for index, vector in zip(sent_at, vectors, strict=True):
            result[index] = vector
        return result


def _native_route(name: str, kwargs: dict[str, Any], config: dict[str, Any]) -> tuple[Any, Any] | None:
    """The native transport for OpenAI embeddings (``config["transport"]`` as for chat), else None."""
    from types import MappingProxyType

    from lmi.llms.config import DEFAULT_MAX_CONNECTIONS, Deployment
    from lmi.llms.transports import Unsupported
    from lmi.llms.transports import openai as codec
    from lmi.llms.transports.native import NativeTransport

    transport = config.get("transport", "auto")
    if transport not in ("auto", "native", "litellm"):
        raise ConfigurationError(
            f"config['transport'] must be 'auto', 'native' or 'litellm', got {transport!r}"
        )
    if transport == "litellm":
        return None
    if not codec.speaks_embeddings(name, kwargs):
        if transport == "native":
            raise ConfigurationError(f"{name}: transport='native' sends OpenAI embeddings only")
        return None
    try:
        codec.embedding_request({"model": name, "input": [], **kwargs})
    except Unsupported as exc:
        if transport == "native":
            raise ConfigurationError(f"{name}: transport='native' cannot send {exc}") from None
        return None
    native = NativeTransport(codec, int(config.get("max_connections", DEFAULT_MAX_CONNECTIONS)))
    return native, Deployment(name, MappingProxyType({"model": name}), transport)


def _speaks_openai(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether litellm sends ``name`` over OpenAI's embeddings API (which answers base64 on request)."""
    from lmi._lazy import litellm

    try:
        _, provider, _, _ = litellm().get_llm_provider(
            model=name, custom_llm_provider=kwargs.get("custom_llm_provider"), api_base=kwargs.get("api_base")
        )
    except Exception:  # litellm cannot place the model: leave the request as the caller wrote it
        return False
    return provider in BASE64_PROVIDERS


def _quiet_base64_dump_warning() -> None:
    """Silence the one pydantic warning that base64 vectors cause, and only that one.

    litellm dumps the OpenAI SDK's response model, whose ``embedding`` field is typed ``list[float]``;
    a base64 string there makes pydantic warn on every call (each warning text differs, so Python's
    once-per-location rule does not stop the flood). The filter matches that field and type only.
    """
    warnings.filterwarnings("ignore", message=BASE64_DUMP_WARNING, category=UserWarning)


def vectors_by_index(data: Sequence[Any], count: int) -> list[Any]:
    """The embeddings of a response's ``data`` for ``count`` inputs, each placed at its ``index``.

    Every index ``0..count-1`` must appear exactly once: a proxy that numbers sub-batches from 0 would
    otherwise hand texts each other's vectors without a word.
    """
    items = [item if isinstance(item, dict) else dict(item) for item in data]
    indices = [item.get("index") for item in items]
    if sorted(i for i in indices if isinstance(i, int) and not isinstance(i, bool)) != list(range(count)):
        shown = indices if len(indices) <= 20 else [*indices[:20], "..."]
        raise ValueError(
            f"the provider's embeddings carry indices {shown}; {count} texts need each of "
            f"0..{count - 1} exactly once"
        )
    vectors: list[Any] = [None] * count
    for item in items:
        vectors[item["index"]] = item["embedding"]
    return vectors


def decode_vector(embedding: list[float] | str) -> list[float]:
    """A vector as floats: a base64 string holds little-endian float32s, as OpenAI sends them."""
    if not isinstance(embedding, str):
        return embedding
    import numpy as np

    vector: list[float] = np.frombuffer(base64.b64decode(embedding), dtype="<f4").tolist()
    return vector


__all__ = ["LiteLLMEmbeddingModel", "vectors_by_index"]
