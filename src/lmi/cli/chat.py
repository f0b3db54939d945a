"""``lmi chat``: one prompt to one model, the answer streamed to stdout, usage and cost to stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmi.cli._common import CLIError, check_credentials, unreachable, write_stdout

if TYPE_CHECKING:
    from lmi.types import LLMResult


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chat",
        parents=parents,
        help="send one prompt to a model and stream the answer",
        description=(
            "Send PROMPT to a model and stream the answer to stdout; the model, token counts and cost go"
            " to stderr. The provider's key comes from its environment variable (OPENAI_API_KEY,"
            " ANTHROPIC_API_KEY, ...)."
        ),
    )
    parser.add_argument("prompt", help="the prompt, or - to read it from stdin")
    parser.add_argument(
        "-m",
        "--model",
        # lmi.llms.config.DEFAULT_MODEL, spelled out: `lmi --help` must not import pydantic (a test
        # keeps the two equal)
        help="a LiteLLM model name, e.g. anthropic/claude-3-5-haiku-latest (default: gpt-4o-2024-11-20)",
    )
    parser.add_argument("-s", "--system", help="a system message sent before the prompt")
    parser.add_argument(
        "--json-schema",
        metavar="FILE",
        type=Path,
        help="a JSON-schema file: ask for structured output matching it, and validate the answer",
    )
    parser.add_argument("--no-stream", action="store_true", help="print the answer once it is complete")
    parser.add_argument(
        "-t",
        "--temperature",
        type=float,
        metavar="T",
        help="sampling temperature, e.g. 0 for the most likely answer (default: the provider's)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="the most tokens the answer may have; it stops there (default: the provider's limit)",
    )
    parser.add_argument(
        "--api-base",
        metavar="URL",
        help="the server to call, e.g. a local OpenAI-compatible one (http://127.0.0.1:8000/v1, with"
        " --model openai/<name>); no API key is required then",
    )
    parser.set_defaults(run=run)


def read_prompt(argument: str) -> str:
    prompt = sys.stdin.read() if argument == "-" else argument
    if not prompt.strip():
        raise CLIError("the prompt is empty" + (" (nothing on stdin)" if argument == "-" else ""))
    return prompt


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON-schema object from ``path``, or a one-line error saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the schema file {path}: {_reason(exc)}") from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"the schema file {path} is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise CLIError(f"the schema file {path} holds a JSON {type(schema).__name__}, not a schema object")
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise CLIError(f"the schema file {path} is not a valid JSON schema: {exc.message}") from None
    return schema


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


def model_config(args: argparse.Namespace, model: str, api_key: str | None) -> dict[str, Any]:
    """The flat ``LiteLLMModel`` config the options describe."""
    config: dict[str, Any] = {"name": model}
    if args.temperature is not None:
        config["temperature"] = args.temperature
    if args.max_tokens is not None:
        config["max_tokens"] = args.max_tokens
    if args.api_base is not None:
        config["api_base"] = args.api_base
    if api_key is not None:
        config["api_key"] = api_key
    return config


def run(args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt)
    schema = load_schema(args.json_schema) if args.json_schema is not None else None
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise CLIError("--max-tokens must be a positive number")

    import asyncio

    from lmi.llms import LiteLLMModel
    from lmi.llms.config import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    api_key = check_credentials(model, args.api_base)
    llm = LiteLLMModel(config=model_config(args, model, api_key))
    # Plain dicts: a native model then answers without importing aviary or litellm at all.
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": prompt})
    callbacks = None if args.no_stream else [write_stdout]

    started = time.perf_counter()
    try:
        result = asyncio.run(llm.call_single(messages, callbacks=callbacks, output_type=schema))
    except Exception as exc:
        failure = unreachable(exc, args.api_base)
        if failure is None:
            raise
        raise failure from exc
    elapsed = time.perf_counter() - started
    text = result.text or ""
    if args.no_stream:
        write_stdout(text)
    if not text.endswith("\n"):
        write_stdout("\n")
    print(summary(result, elapsed), file=sys.stderr)
    return 0


def summary(result: LLMResult, seconds: float) -> str:
    """``gpt-4o-mini: 9 prompt + 10 completion tokens, $0.00000735, 0.84 s``."""
    from lmi.cost import format_usd

    estimated = " (estimated)" if result.usage_estimated else ""
    return (
        f"{result.model}: {result.prompt_count:,} prompt + {result.completion_count:,} completion tokens"
        f"{estimated}, {format_usd(result.cost)}, {seconds:.2f} s"
    )
