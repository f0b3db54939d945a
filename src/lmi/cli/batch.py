"""``lmi batch submit | status | collect | cancel``: prompts from a JSONL file through a batch API."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from lmi.cli._common import CLIError


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "batch",
        parents=parents,
        help="send many prompts through a provider's batch API (half price, resumable)",
        description=(
            "Send the prompts of a JSONL file through OpenAI's Batch API or Anthropic's Message Batches"
            " (half price; answers within 24 h). Jobs are kept in a local state file, so they can be"
            " collected later or from another process."
        ),
    )
    commands = parser.add_subparsers(title="batch commands", metavar="COMMAND", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--batch-dir", metavar="DIR", help="where job state is kept (default: LMI_BATCH_DIR or ~/.cache/lmi)"
    )

    submit = commands.add_parser(
        "submit",
        parents=[*parents, state],
        help="submit a JSONL file of prompts",
        description=(
            "Each line of PROMPTS is a JSON string (the prompt), or an object with 'messages' (a string or"
            " chat messages) or 'prompt', optional request parameters (temperature, max_tokens, ...) and an"
            " optional 'id' copied to the output."
        ),
    )
    submit.add_argument("prompts", type=Path, help="the JSONL file of prompts")
    submit.add_argument("-m", "--model", default="gpt-4o-mini", help="the model (default: gpt-4o-mini)")
    submit.add_argument("-o", "--output", type=Path, help="write results here as JSONL (default: stdout)")
    submit.add_argument("--api-base", metavar="URL", help="the provider's base URL, e.g. a proxy")
    submit.add_argument(
        "--detach", action="store_true", help="submit and print the job id without waiting for the answers"
    )
    submit.set_defaults(run=run_submit)

    status = commands.add_parser(
        "status", parents=[*parents, state], help="list jobs, or show one job's batches"
    )
    status.add_argument("id", nargs="?", help="a job id (or a provider batch id); omit to list every job")
    status.set_defaults(run=run_status)

    collect = commands.add_parser(
        "collect", parents=[*parents, state], help="wait for a job and write its results"
    )
    collect.add_argument("id", help="the job id printed by submit (or a provider batch id)")
    collect.add_argument("-o", "--output", type=Path, help="write results here as JSONL (default: stdout)")
    collect.set_defaults(run=run_collect)

    cancel = commands.add_parser(
        "cancel", parents=[*parents, state], help="cancel a job's unfinished batches"
    )
    cancel.add_argument("id", help="the job id (or a provider batch id)")
    cancel.set_defaults(run=run_cancel)


def read_prompts(path: Path) -> tuple[list[Any], list[Any]]:
    """The prompts of a JSONL file, and the caller's ids for them (None where a line has none)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from exc
    prompts, ids = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CLIError(f"{path}:{number}: not JSON ({exc})") from exc
        if isinstance(item, dict):
            ids.append(item.pop("id", None))
        elif isinstance(item, str):
            ids.append(None)
        else:
            raise CLIError(f"{path}:{number}: expected a JSON string or object, got {type(item).__name__}")
        prompts.append(item)
    if not prompts:
        raise CLIError(f"{path} holds no prompts")
    return prompts, ids


def _model(args: argparse.Namespace) -> Any:
    from lmi import LiteLLMModel

    params: dict[str, Any] = {"model": args.model}
    if args.api_base:
        params["api_base"] = args.api_base
    config: dict[str, Any] = {"model_list": [{"model_name": args.model, "litellm_params": params}]}
    if args.batch_dir:
        config["batch_dir"] = args.batch_dir
    return LiteLLMModel(name=args.model, config=config)


def write_results(results: list[Any], ids: list[Any] | None, output: Path | None) -> None:
    from lmi.cost import format_usd

    lines = []
    total = 0.0
    for index, result in enumerate(results):
        row: dict[str, Any] = {"index": index}
        if ids and ids[index] is not None:
            row["id"] = ids[index]
        if isinstance(result, Exception):
            row.update(error=str(result), kind=getattr(result, "kind", type(result).__name__))
        else:
            total += result.cost
            row.update(
                text=result.text, model=result.model, finish_reason=result.finish_reason,
                prompt_tokens=result.prompt_count, completion_tokens=result.completion_count,
                cost_usd=result.cost,
            )  # fmt: skip
        lines.append(json.dumps(row))
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    failed = sum(1 for r in results if isinstance(r, Exception))
    where = f" to {output}" if output else ""
    cost = format_usd(total)
    print(
        f"lmi: {len(results) - failed} answered, {failed} failed, {cost} at batch prices{where}",
        file=sys.stderr,
    )


def run_submit(args: argparse.Namespace) -> int:
    from lmi.batch import submit_batch

    prompts, ids = read_prompts(args.prompts)
    llm = _model(args)
    if args.detach:
        job_id = asyncio.run(submit_batch(llm, prompts))
        print(job_id)
        print(f"lmi: submitted {len(prompts)} prompts as job {job_id}; collect with: lmi batch collect"
              f" {job_id} -o results.jsonl", file=sys.stderr)  # fmt: skip
        return 0
    results = asyncio.run(llm.call_batch(prompts, progress=sys.stderr.isatty()))
    write_results(results, ids, args.output)
    return 0


def _job(func: Any, args: argparse.Namespace, **kwargs: Any) -> Any:
    try:
        return asyncio.run(func(args.id, batch_dir=args.batch_dir, **kwargs))
    except KeyError as exc:
        raise CLIError(f"{exc.args[0]}; 'lmi batch status' lists the jobs") from None


def run_status(args: argparse.Namespace) -> int:
    from lmi._table import render_table
    from lmi.batch import BatchStore, batch_status

    if args.id is None:
        jobs = BatchStore(args.batch_dir).jobs()
        if not jobs:
            print("no batch jobs", file=sys.stderr)
            return 0
        rows = [
            [j.job_id, j.model, j.provider, str(j.n_items), j.state,
             datetime.fromtimestamp(j.created_at).strftime("%Y-%m-%d %H:%M")]
            for j in jobs
        ]  # fmt: skip
        print(
            render_table(
                ["job", "model", "provider", "items", "state", "created"],
                rows,
                [False, False, False, True, False, False],
            )
        )
        return 0
    job, batches = _job(batch_status, args)
    print(f"job {job.job_id}: {job.model} ({job.provider}), {job.n_items} items, {job.state}")
    rows = [[b["batch_id"], b["state"], f"{b['done']}/{b['total']}"] for b in batches]
    print(render_table(["batch", "state", "done"], rows, [False, False, True]))
    return 0


def run_collect(args: argparse.Namespace) -> int:
    from lmi.batch import collect_batch

    results = _job(collect_batch, args, progress=sys.stderr.isatty())
    write_results(results, None, args.output)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from lmi.batch import cancel_batch

    cancelled = _job(cancel_batch, args)
    print(f"lmi: cancelling {len(cancelled)} batch(es): {', '.join(cancelled) or 'none unfinished'}",
          file=sys.stderr)  # fmt: skip
    return 0
