"""``netmind-frames``: the command line, a thin shell over the library.

Exit codes: 0 every row ok, 1 an error, 2 a usage error, 3 the job finished but some rows
did not succeed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
import pandas as pd

from . import __version__
from ._api import batch_complete
from ._errors import NetmindFramesError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_ROWS_FAILED = 0, 1, 2, 3

_COMPLETE_EXAMPLE = """\
example:
  netmind-frames complete examples/reviews.parquet out.parquet --local \\
      --prompt "Classify the sentiment of this review: {review}" \\
      --model meta-llama/Meta-Llama-3.1-8B-Instruct --max-tokens 5
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    try:
        return int(args.handler(args))
    except NetmindFramesError as exc:
        if args.debug:
            raise
        print(f"netmind-frames: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except openai.APIError as exc:
        if args.debug:
            raise
        print(f"netmind-frames: error from the API: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="netmind-frames",
        description="Run an LLM over every row of a table through a Batch API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.set_defaults(command=None)
    subparsers = parser.add_subparsers(title="commands")
    _add_complete(subparsers)
    try:
        from .server._cli import add_serve_parser
    except ImportError:  # the optional extra [local] is not installed
        pass
    else:
        add_serve_parser(subparsers)
    return parser


def _add_complete(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "complete",
        help="run a prompt over every row of a file and write the answers (Parquet out)",
        description="Run one chat completion per row of IN (Parquet, CSV or JSONL) through "
        "the Batch API, wait, and write IN's columns plus the result columns to OUT (Parquet).",
        epilog=_COMPLETE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="input table (.parquet, .csv, .jsonl)")
    p.add_argument("output", type=Path, help="output Parquet file")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="a template over column names, e.g. 'Summarise: {text}'")
    prompt.add_argument("--prompt-column", help="a column holding the whole prompt")
    p.add_argument("--model", required=True, help="the model of every request")
    p.add_argument("--system", help="a system message put before every prompt")
    p.add_argument("--max-tokens", type=int, help="max_tokens of every request")
    p.add_argument("--temperature", type=float, help="temperature of every request")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other request parameter, e.g. --param seed=7 (repeatable)",
    )
    p.add_argument("--local", action="store_true", help="use the embedded local batch server")
    p.add_argument("--base-url", help="the Batch API base URL (default: NETMIND_BASE_URL)")
    p.add_argument("--provider", choices=["netmind", "openai"], help="override auto-detection")
    p.add_argument("--prefix", default="", help="put before every result column name")
    p.add_argument("--poll-interval", type=float, default=30.0, help="longest wait between polls")
    p.add_argument("--timeout", type=float, help="stop waiting after this many seconds")
    p.add_argument(
        "--retries", type=int, default=2, help="rounds of re-sending retryable failed rows"
    )
    p.add_argument(
        "--resubmit", action="store_true", help="new batches even if identical ones exist"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_complete, command="complete")


def _run_complete(args: argparse.Namespace) -> int:
    frame = read_table(args.input)
    params = _parse_params(args.param)
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    out = batch_complete(
        frame,
        args.prompt,
        model=args.model,
        prompt_column=args.prompt_column,
        system=args.system,
        prefix=args.prefix,
        base_url=args.base_url,
        provider=args.provider,
        local=args.local,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        progress=not args.quiet,
        retries=args.retries,
        resubmit=args.resubmit,
        **params,
    )
    out.to_parquet(args.output)
    status = out[f"{args.prefix}status"]
    failed = int((status != "ok").sum())
    if not args.quiet:
        print(f"{len(out) - failed} of {len(out)} rows ok; wrote {args.output}", file=sys.stderr)
    return EXIT_ROWS_FAILED if failed else EXIT_OK


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet, CSV or JSONL file, chosen by its extension."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str)  # as text: "0001" stays "0001"
    if suffix in (".jsonl", ".ndjson"):
        # dtype=False: never turn "0001" into 1.
        return pd.read_json(path, lines=True, dtype=False)
    raise NetmindFramesError(f"{path}: unknown input format {suffix!r} (.parquet, .csv, .jsonl)")


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise NetmindFramesError(f"--param takes KEY=JSON, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a bare word is a string: --param stop=END
    return params


if __name__ == "__main__":
    sys.exit(main())
