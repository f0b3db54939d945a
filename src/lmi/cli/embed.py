"""``lmi embed``: files (or lines) to vectors, written as JSON lines or one numpy matrix."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lmi.cli._common import CLIError, check_credentials, shares_terminal, unreachable

if TYPE_CHECKING:
    from lmi.embeddings import EmbeddingModel

STDIN = "-"
DEFAULT_BATCH_SIZE = 16
BATCHES_PER_STEP = 8  # documents handed to the model at once: batch size × this (LiteLLM's concurrency)
FORMATS = (".jsonl", ".npy")


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "embed",
        parents=parents,
        help="embed files or lines of text",
        description=(
            "Embed each FILE as one document (each line with --lines; stdin, given as -, is always read"
            " line by line; blank lines are skipped). Writes JSON lines {source, index, line, embedding}"
            " or a float64 matrix with one row per document, in input order (.npy)."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="text files, or - for stdin")
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="sparse (local, offline), st-<sentence-transformers name or directory> (local),"
        " hybrid-<dense model>, or a LiteLLM embedding model such as text-embedding-3-small",
    )
    parser.add_argument(
        "-o", "--out", default=STDIN, help="out.jsonl or out.npy (default: JSON lines on stdout)"
    )
    parser.add_argument("--lines", action="store_true", help="embed each non-blank line of the files")
    parser.add_argument(
        "--batch-size", type=int, metavar="N", help=f"texts per request (default {DEFAULT_BATCH_SIZE})"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar on stderr (default: when stderr is a terminal that JSON output to"
        " stdout does not share)",
    )
    parser.add_argument("--api-base", metavar="URL", help="the embedding server to call (LiteLLM models)")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Document:
    source: str
    line: int | None  # 1-based, when the document is one line of its source
    text: str


def read_documents(files: list[str], lines: bool) -> list[Document]:
    documents: list[Document] = []
    for name in files:
        if name == STDIN:
            documents.extend(_lines(name, _read_stdin()))
            continue
        try:
            # Lines end at \n or \r\n only: newline="" keeps a lone \r (and str.splitlines' form feeds
            # and U+2028) inside its line.
            with open(name, encoding="utf-8", newline="" if lines else None) as file:
                text = file.read()
        except OSError as exc:
            raise CLIError(f"cannot read {name}: {(exc.strerror or str(exc)).lower()}") from None
        except UnicodeDecodeError:
            raise CLIError(f"cannot read {name}: not UTF-8 text") from None
        documents.extend(_lines(name, text) if lines else [Document(name, None, text)])
    return documents


def _read_stdin() -> str:
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # replaced by a text-only stream
        return sys.stdin.read()
    try:
        return raw.read().decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError("cannot read stdin: not UTF-8 text") from None


def _lines(source: str, text: str) -> Iterator[Document]:
    """Each non-blank line, numbered from 1; lines end at LF or CRLF, nothing else."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield Document(source, number, line)


def output_format(out: str) -> str:
    if out == STDIN:
        return ".jsonl"
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise CLIError(f"--out must end in .jsonl or .npy, not {out!r}")
    if not Path(out).parent.is_dir():
        raise CLIError(f"cannot write {out}: no directory {Path(out).parent}")
    return suffix


def build_model(name: str, batch_size: int | None, api_base: str | None) -> EmbeddingModel:
    from lmi.embeddings import embedding_model_factory

    model = embedding_model_factory(name)
    for part in _parts(model):
        _configure(part, batch_size, api_base)
    return model


def _parts(model: EmbeddingModel) -> list[EmbeddingModel]:
    from lmi.embeddings import HybridEmbeddingModel

    if isinstance(model, HybridEmbeddingModel):
        return [part for member in model.models for part in _parts(member)]
    return [model]


def _configure(model: EmbeddingModel, batch_size: int | None, api_base: str | None) -> None:
    from lmi.embeddings import LiteLLMEmbeddingModel, SentenceTransformerEmbeddingModel

    if isinstance(model, LiteLLMEmbeddingModel):
        api_key = check_credentials(model.name, api_base, what="embedding model")
        kwargs = dict(model.config.get("kwargs") or {})
        if api_base is not None:
            kwargs["api_base"] = api_base
        if api_key is not None:
            kwargs["api_key"] = api_key
        model.config = {**model.config, "kwargs": kwargs, "progress": False}  # the CLI shows its own bar
        model.batch_size = batch_size or DEFAULT_BATCH_SIZE
    elif isinstance(model, SentenceTransformerEmbeddingModel) and batch_size is not None:
        encode_kwargs = {**(model.config.get("encode_kwargs") or {}), "batch_size": batch_size}
        model.config = {**model.config, "encode_kwargs": encode_kwargs}


def run(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size <= 0:
        raise CLIError("--batch-size must be a positive number")
    suffix = output_format(args.out)
    documents = read_documents(args.files, args.lines)
    if not documents:
        raise CLIError("nothing to embed: the input holds no text")
    model = build_model(args.model, args.batch_size, args.api_base)

    import asyncio

    started = time.perf_counter()
    try:
        with _output(args.out) as stream:
            ndim = asyncio.run(_embed(model, documents, suffix, stream, args))
    except Exception as exc:
        failure = unreachable(exc, args.api_base)
        if failure is None:
            raise
        raise failure from exc
    elapsed = time.perf_counter() - started
    destination = "stdout" if args.out == STDIN else args.out
    count = f"{len(documents):,} document{'s' * (len(documents) != 1)}"
    timing = f"{ndim} dimensions, {elapsed:.2f} s{_cost(model)}"
    print(f"embedded {count} with {_label(model)}: {timing} -> {destination}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(out: str) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file beside ``out`` that replaces it only once everything is written."""
    if out == STDIN:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    target = Path(out)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as handle:
        try:
            yield handle
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
            raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # temporary files are private; the output is a normal file
    os.replace(handle.name, target)


async def _embed(
    model: EmbeddingModel, documents: list[Document], suffix: str, stream: IO[bytes], args: argparse.Namespace
) -> int:
    """Embed ``documents`` step by step into ``stream``; return the vector size."""
    import numpy as np

    step = (args.batch_size or DEFAULT_BATCH_SIZE) * BATCHES_PER_STEP
    matrix: np.ndarray | None = None
    ndim = 0
    show = _show_progress(args.progress, args.out)
    await _load_local_models(model, show)
    bar = _progress_bar(len(documents), show, _label(model))
    try:
        for start in range(0, len(documents), step):
            chunk = documents[start : start + step]
            vectors = await model.embed_documents([document.text for document in chunk])
            ndim = len(vectors[0]) if vectors else ndim
            if suffix == ".npy":
                if matrix is None:
                    matrix = np.empty((len(documents), ndim), dtype=np.float64)
                matrix[start : start + len(chunk)] = vectors
            else:
                stream.write(_json_lines(chunk, vectors, start))
            bar.update(len(chunk))
    finally:
        bar.close()
    if matrix is not None:
        np.save(stream, matrix, allow_pickle=False)
    return ndim


def _json_lines(chunk: list[Document], vectors: list[list[float]], start: int) -> bytes:
    rows = []
    for offset, (document, vector) in enumerate(zip(chunk, vectors, strict=True)):
        row: dict[str, Any] = {"source": document.source, "index": start + offset}
        if document.line is not None:
            row["line"] = document.line
        row["embedding"] = vector
        rows.append(json.dumps(row) + "\n")
    return "".join(rows).encode()


def _cost(model: EmbeddingModel) -> str:
    from lmi.cost import format_usd
    from lmi.embeddings import LiteLLMEmbeddingModel

    billed = [part for part in _parts(model) if isinstance(part, LiteLLMEmbeddingModel)]
    if not billed:
        return ""
    tokens = sum(part.total_prompt_tokens for part in billed)
    return f", {tokens:,} tokens, {format_usd(sum(part.total_cost for part in billed))}"


def _show_progress(flag: bool | None, out: str) -> bool:
    """``--progress``/``--no-progress``; by default only on a terminal, and not over JSON written to it."""
    if flag is not None:
        return flag
    return sys.stderr.isatty() and not (out == STDIN and shares_terminal())


async def _load_local_models(model: EmbeddingModel, show: bool) -> None:
    """Load sentence-transformers models before the bar starts, saying so, rather than show 0 % for 10 s.

    Their libraries' own bars ("Loading weights") would mix with ours: they are switched off.
    """
    from lmi.embeddings import SentenceTransformerEmbeddingModel

    for part in _parts(model):
        if isinstance(part, SentenceTransformerEmbeddingModel) and not part.loaded:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers loads
            if show:
                print(f"loading {part.short_name} (sentence-transformers)...", file=sys.stderr, flush=True)
            await part.aload()


def _label(model: EmbeddingModel) -> str:
    """The bar's label: a model's short name, not the path of its directory."""
    from lmi.embeddings import SentenceTransformerEmbeddingModel

    names = [
        p.short_name if isinstance(p, SentenceTransformerEmbeddingModel) else p.name for p in _parts(model)
    ]
    return "+".join(names)


class _Progress:
    """A bare "n/total documents" counter on stderr, when tqdm is not installed."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.total, self.done, self.description, self.enabled = total, 0, description, enabled

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            sys.stderr.write(f"\r{self.description}: {self.done}/{self.total} documents")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


def _progress_bar(total: int, enabled: bool, description: str) -> Any:
    """tqdm on stderr when installed, else a bare counter."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Progress(total, description, enabled)
    return tqdm(total=total, desc=description, unit="doc", file=sys.stderr, disable=not enabled)
