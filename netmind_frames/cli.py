"""``netmind-frames``: the command line, a thin shell over the library.

Exit codes: 0 every row ok, 1 an error, 2 a usage error, 3 the job finished but some rows
did not succeed.

Start-up is kept short: building the parser imports no pandas, pyarrow, openai or server
(about a second together), so ``--help``, ``COMMAND --help`` and ``list`` start at once; each
handler imports what its command needs (tests/test_startup.py checks this).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, _timing
from ._errors import InputError, NetmindFramesError
from .transport._config import MAX_CONCURRENT_BATCHES, MAX_REQUESTS

if TYPE_CHECKING:
    from .jobs._job import BatchJob

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_ROWS_FAILED = 0, 1, 2, 3

_EXAMPLES = {
    "complete": """\
  netmind-frames complete examples/reviews.parquet out.parquet --local \\
      --prompt "Classify the sentiment of this review: {review}" \\
      --model meta-llama/Meta-Llama-3.1-8B-Instruct --max-tokens 5
  # try a prompt on a few rows through the synchronous endpoint (twice the price):
  netmind-frames complete sample.parquet out.parquet --mode sync --max-concurrency 4 \\
      --prompt "Summarise: {review}" --model MODEL""",
    "submit": """\
  netmind-frames submit reviews.parquet --prompt "Summarise: {review}" --model MODEL
  # prints the job id (job-...); later: netmind-frames result JOB out.parquet""",
    "status": "  netmind-frames status job-0123456789abcdef01234567",
    "wait": "  netmind-frames wait job-0123456789abcdef01234567 --timeout 3600",
    "result": "  netmind-frames result job-0123456789abcdef01234567 out.parquet",
    "cancel": "  netmind-frames cancel job-0123456789abcdef01234567",
    "list": "  netmind-frames list --limit 5",
    "files": """\
  netmind-frames files                      # what this machine's jobs keep on the provider
  netmind-frames files --older-than 7 --delete""",
    "doctor": """\
  netmind-frames doctor            # configuration, reachability, key, listing (free)
  netmind-frames doctor --live     # plus one 1-token batch; attach the JSON to a bug report""",
    "embed": """\
  netmind-frames embed examples/reviews.parquet vectors.parquet --local --mode sync \\
      --column review --model BAAI/bge-m3 --param dimensions=256
  # --local emulates Netmind, which runs no embedding batches yet: batch mode needs an
  # OpenAI-compatible --base-url (e.g. the 'OpenAI base URL' netmind-frames serve prints)""",
    "estimate": """\
  netmind-frames estimate examples/reviews.parquet --prompt "Summarise: {review}" \\
      --model meta-llama/Meta-Llama-3.1-8B-Instruct --max-tokens 50 --prices prices.json""",
}

_LOCAL_NOTE = (
    "--local starts a server inside this process, which stops when the command ends (and its "
    "batches with it): use it with `complete` and `embed --mode sync`. For jobs that outlive "
    "a command, run `netmind-frames serve` and pass --base-url."
)
#: The --local help of each command that takes it (the others refuse it).
_LOCAL_HELP = {
    "complete": "run on a local batch server inside this command (no key needed; it stops "
    "with the command, and its batches with it)",
    "embed": "run on a local batch server inside this command; it emulates Netmind, which "
    "runs no embedding batches: use it with --mode sync",
    "doctor": "check the local batch server inside this command (a self-test, no key needed)",
}
#: Options the CLI owns: --param may not set them (the option to use instead).
_OWNED_PARAMS = {
    "messages": "--prompt, --prompt-column or --messages-column",
    "stream": "nothing: batches do not stream",
}
_IN_HELP = (
    "input table (.parquet, .csv, .jsonl) or a directory of Parquet files (a dataset); a "
    "path or a URL: s3://, gs://, az://, abfs:// (the cloud extra: pip install -e '.[cloud]'), file://"
)
_OUT_HELP = "output Parquet file (or, with --dataset, directory); a path or a URL, as IN"
_SERVE_HELP = "run the local batch server (Netmind + OpenAI dialects) until interrupted"
_SERVE_MISSING = (
    "netmind-frames serve needs the optional extra [local] (starlette, uvicorn, "
    "python-multipart): from a clone of the repository, pip install -e '.[local]'"
)


class UsageError(Exception):
    """A usage error found after parsing (exit code 2)."""


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
    except BrokenPipeError:
        # The reader went away (`netmind-frames list | head`): stop quietly, and keep Python
        # from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except UsageError as exc:
        print(f"netmind-frames {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NetmindFramesError as exc:
        if args.debug:
            raise
        print(f"netmind-frames: error: {cli_words(_one_line(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except _api_errors() as exc:
        if args.debug:
            raise
        print(f"netmind-frames: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The ``netmind-frames`` console script: :func:`main` in a process of its own."""
    _fast_allocator()
    code = main()
    # Python's last garbage collection walks every object that pandas and openai made (~0.15 s
    # of each command's exit); the process ends here, so those objects are left to the OS.
    # Everything of ours is closed by now, and atexit handlers (the spool's removal) still run.
    gc.freeze()
    sys.exit(code)


def _fast_allocator() -> None:
    """Have Arrow allocate with jemalloc in this process, where the wheels ship it.

    Arrow's default, mimalloc, hands freed memory back to the OS within milliseconds, so each
    window of a job faults its memory in (and the kernel zeroes it) again: on the 1M-row
    benchmark jemalloc, which keeps it a second, saves ~0.5 CPU-s of the client's ~7.5. Arrow
    reads ``ARROW_DEFAULT_MEMORY_POOL`` once, when pyarrow is imported, so this runs before
    any command imports it; a value the user set is kept. Only the console script does this:
    a program that calls :func:`main` or the Python API keeps its allocator.
    """
    if sys.platform == "linux" and platform.machine() == "x86_64":
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _api_errors() -> tuple[type[BaseException], ...]:
    """The errors reported in one line: ``OSError``, and ``openai.APIError`` once openai is
    imported (until then none can be raised, and importing it here would cost ~0.5 s)."""
    openai = sys.modules.get("openai")
    return (OSError,) if openai is None else (OSError, openai.APIError)


#: The library's messages name Python keywords; the CLI says its own options instead.
_PHRASES = (
    (
        "pass api_key=... or set the NETMIND_API_KEY environment variable",
        "set the NETMIND_API_KEY environment variable (or name another one with --api-key-env)",
    ),
    (
        "pass prices={model: {'input': usd_per_million, 'output': usd_per_million}}",
        'pass --prices FILE.json (a JSON object {"MODEL": {"input": usd_per_million, '
        '"output": usd_per_million}})',
    ),
    ("netmind_frames.doctor()", "netmind-frames doctor"),
    ("local=True", "--local"),
    ("resubmit=True", "--resubmit"),
    ("keep_files=True", "--keep-files"),
    ("mode='sync'", "--mode sync"),
    ("provider='openai'", "--provider openai"),
)
_KEYWORDS = (
    "model|model_column|prompt|prompt_column|messages_column|custom_id_column|params_column|"
    "column|base_url|api_key|provider|max_tokens|temperature|max_cost|prices|retries|timeout|"
    "poll_interval|max_requests|max_bytes|max_concurrent_batches|max_concurrency|"
    "sync_threshold|prefix|system|schema|mode"
)


def cli_words(message: str) -> str:
    """A library message in the CLI's words: ``local=True`` -> ``--local``, ``model=`` ->
    ``--model``, ``max_cost=$5`` -> ``--max-cost $5``, ``netmind_frames.doctor()`` ->
    ``netmind-frames doctor``."""
    for python, cli in _PHRASES:
        message = message.replace(python, cli)

    def option(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        return flag + (" " if match.group(2) else "")

    return re.sub(rf"\b({_KEYWORDS})=(?=([^\s,.;:)/]))?", option, message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="netmind-frames",
        description="Run an LLM over every row of a table through a Batch API.",
        epilog="Exit codes: 0 every row ok, 1 an error, 2 a usage error, 3 some rows failed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.set_defaults(command=None)
    subparsers = parser.add_subparsers(title="commands")
    _add_complete(subparsers)
    _add_embed(subparsers)
    _add_submit(subparsers)
    _add_job_commands(subparsers)
    _add_estimate(subparsers)
    _add_list(subparsers)
    _add_files(subparsers)
    _add_doctor(subparsers)
    # `serve` takes its arguments whole, even --help, and parses them with the server's own
    # parser only when it runs: importing the server (starlette, uvicorn) costs ~0.8 s.
    serve = subparsers.add_parser("serve", help=_SERVE_HELP, prefix_chars="\0", add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    serve.set_defaults(handler=_run_serve, command="serve")
    return parser


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from .server._cli import add_serve_parser
    except ImportError:  # the optional extra [local] is not installed: say how to add it
        raise UsageError(_SERVE_MISSING) from None
    parser = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(parser.add_subparsers())
    known = argparse.Namespace(debug=args.debug, command="serve")
    served = parser.parse_args(["serve", *args.rest], namespace=known)
    return int(served.func(served))


def _command(subparsers: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n{_EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks")
    return p


def _add_request_options(p: argparse.ArgumentParser) -> None:
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="a template over column names, e.g. 'Summarise: {text}'")
    prompt.add_argument("--prompt-column", help="a column holding the whole prompt")
    prompt.add_argument(
        "--messages-column",
        help='a column of chat message lists ([{"role": "user", "content": "..."}], e.g. JSONL)',
    )
    p.add_argument("--model", help="the model of every request (or --model-column)")
    p.add_argument("--model-column", help="a column naming each row's model (one batch per model)")
    p.add_argument(
        "--params-column", help="a column of per-row request parameters (a dict per row)"
    )
    p.add_argument(
        "--custom-id-column",
        help="a column of unique row ids used as custom_id (default: the row position)",
    )
    p.add_argument(
        "--schema",
        type=Path,
        metavar="FILE.json",
        help="a JSON Schema file: structured answers parsed into one typed column per field",
    )
    p.add_argument("--system", help="a system message put before every prompt")
    p.add_argument("--max-tokens", type=_positive, help="max_tokens of every request")
    p.add_argument("--temperature", type=float, help="temperature of every request")
    _add_batch_options(p)


def _add_batch_options(p: argparse.ArgumentParser, *, max_cost: bool = True) -> None:
    """Options every submitting command shares (complete, embed, submit)."""
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other request parameter, e.g. --param seed=7 or dimensions=256 (repeatable)",
    )
    p.add_argument("--prefix", default="", help="put before every result column name")
    p.add_argument(
        "--max-requests", type=_positive, default=MAX_REQUESTS, help="requests per batch"
    )
    p.add_argument(
        "--max-bytes", type=_positive, help="bytes per batch file (default: the provider's)"
    )
    p.add_argument(
        "--window",
        type=_positive,
        metavar="ROWS",
        help="rows read, built and written at a time (default: about 100,000, a multiple of "
        "--max-requests); with --dataset, rows per part file",
    )
    p.add_argument(
        "--retries", type=int, default=2, help="rounds of re-sending retryable failed rows"
    )
    p.add_argument(
        "--resubmit", action="store_true", help="new batches even if identical ones exist"
    )
    _add_prices(p, max_cost=max_cost)


def _add_prices(p: argparse.ArgumentParser, *, max_cost: bool = True) -> None:
    p.add_argument(
        "--prices",
        type=Path,
        metavar="FILE.json",
        help='token prices, {"MODEL": {"input": USD, "output": USD}} per million tokens at '
        "the batch rate (default: NETMIND_FRAMES_HOME/prices.json if it exists); the summary "
        "then shows the cost",
    )
    if max_cost:
        p.add_argument(
            "--max-cost",
            type=float,
            metavar="USD",
            help="refuse to submit when the cost may exceed USD (needs --max-tokens and a "
            "price for --model; see `netmind-frames estimate`)",
        )


def _add_connection_options(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--local", action="store_true", help=_LOCAL_HELP.get(command, argparse.SUPPRESS))
    p.add_argument("--base-url", help="the Batch API base URL (default: NETMIND_BASE_URL)")
    p.add_argument("--provider", choices=["netmind", "openai"], help="override auto-detection")
    p.add_argument(
        "--api-key-env",
        default="NETMIND_API_KEY",
        metavar="NAME",
        help="the environment variable holding the key (default NETMIND_API_KEY)",
    )


def _add_wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--poll-interval", type=float, default=30.0, help="longest wait between polls")
    p.add_argument("--timeout", type=float, help="stop waiting after this many seconds")
    p.add_argument(
        "--max-concurrent-batches",
        type=_positive,
        default=MAX_CONCURRENT_BATCHES,
        help=f"batches running at once (default {MAX_CONCURRENT_BATCHES})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument(
        "--timings", action="store_true", help="print the seconds spent per phase (stderr, JSON)"
    )


def _add_complete(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "complete",
        "run a prompt over every row of a file and write the answers (Parquet out)",
        "Run one chat completion per row of IN (Parquet, CSV or JSONL) through the Batch "
        "API, wait, and write IN's columns, in order, plus the result columns to OUT "
        "(Parquet). Parquet is streamed: memory does not grow with the file. --mode sync "
        "sends the same requests to the synchronous endpoint instead (for a few rows: it "
        "costs twice the Batch API's price, and keeps no journal).\n\n" + _LOCAL_NOTE,
    )
    p.add_argument("input", help=_IN_HELP)
    p.add_argument("output", help=_OUT_HELP)
    _add_dataset(p)
    _add_request_options(p)
    _add_connection_options(p, "complete")
    _add_wait_options(p)
    _add_mode_options(p)
    _add_keep_files(p)
    p.set_defaults(handler=_run_complete, command="complete")


def _add_mode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=["batch", "sync", "auto"],
        default="batch",
        help="batch (default); sync: the synchronous endpoint, at twice the price; auto: "
        "sync for at most --sync-threshold rows",
    )
    p.add_argument(
        "--max-concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="requests in flight at once in sync mode (default 8)",
    )
    p.add_argument(
        "--sync-threshold",
        type=int,
        metavar="N",
        help="with --mode auto: the most rows sent in sync mode",
    )


def _add_embed(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "embed",
        "embed a text column of a file and write the vectors (Parquet out)",
        "Send one /v1/embeddings request per row of IN (Parquet, CSV or JSONL) through the "
        "Batch API, wait, and write IN's columns plus embedding, prompt_tokens, error_code, "
        "error_message and status to OUT (Parquet). Netmind lists batch embeddings as "
        "coming soon: a provider that rejects the endpoint gives a clear error.\n\n" + _LOCAL_NOTE,
    )
    p.add_argument("input", help=_IN_HELP)
    p.add_argument("output", help=_OUT_HELP)
    _add_dataset(p)
    p.add_argument("--column", required=True, help="the column of texts to embed")
    p.add_argument("--model", help="the embedding model (or --model-column)")
    p.add_argument("--model-column", help="a column naming each row's model")
    p.add_argument(
        "--custom-id-column",
        help="a column of unique row ids used as custom_id (default: the row position)",
    )
    _add_batch_options(p, max_cost=False)
    _add_connection_options(p, "embed")
    _add_wait_options(p)
    _add_mode_options(p)
    _add_keep_files(p)
    p.set_defaults(handler=_run_embed, command="embed")


def _add_submit(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "submit",
        "submit the requests of a file, print the job id and return",
        "Build and submit the requests of IN (the first --max-concurrent-batches shards; "
        "`wait` or `result` submits the rest as slots free up), print the job id and "
        "return. The journal remembers the options and IN's path.\n\n" + _LOCAL_NOTE,
    )
    p.add_argument("input", help=_IN_HELP)
    _add_request_options(p)
    _add_connection_options(p, "submit")
    p.add_argument(
        "--max-concurrent-batches",
        type=_positive,
        default=MAX_CONCURRENT_BATCHES,
        help=f"batches running at once (default {MAX_CONCURRENT_BATCHES})",
    )
    p.add_argument("--quiet", action="store_true", help="print only the job id")
    p.set_defaults(handler=_run_submit, command="submit")


def _add_job_commands(subparsers: Any) -> None:
    status = _command(
        subparsers,
        "status",
        "show a job's status, shard by shard",
        "Print the status of each shard's batch of JOB (from the journal and the server).",
    )
    wait = _command(
        subparsers,
        "wait",
        "wait until a job's batches are done (submitting shards still waiting)",
        "Poll JOB until every batch is terminal, submitting shards that wait for a slot. "
        "Needs the input file (the journal's, or --input).",
    )
    result = _command(
        subparsers,
        "result",
        "wait for a job, then write its input plus the result columns to OUT",
        "Wait for JOB (retrying failed rows), then write the input's columns plus the "
        "result columns to OUT (Parquet). Needs the input file (the journal's, or --input).",
    )
    cancel = _command(
        subparsers,
        "cancel",
        "cancel a job's running batches and submit no more",
        "Cancel every running batch of JOB and mark it so no more shards are submitted. "
        "`result` then gives finished rows their answers and the rest status cancelled.",
    )
    for p in (status, wait, result, cancel):
        p.add_argument("job", help="the job id (job-...) that submit printed")
    result.add_argument("output", help=_OUT_HELP)
    _add_dataset(result)
    _add_keep_files(result)
    result.add_argument(
        "--retries",
        type=int,
        help="rounds of re-sending retryable failed rows (default: the submitting call's)",
    )
    _add_prices(result, max_cost=False)
    for p in (wait, result):
        p.add_argument("--input", help="the input file or URL (default: the journal's)")
        _add_wait_options(p)
    cancel.add_argument(
        "--timeout",
        type=float,
        help="stop waiting for 'cancelling' batches after this many seconds (they go on)",
    )
    for p, name in ((status, "status"), (wait, "wait"), (result, "result"), (cancel, "cancel")):
        _add_connection_options(p, name)
    status.set_defaults(handler=_run_status, command="status")
    wait.set_defaults(handler=_run_wait, command="wait")
    result.set_defaults(handler=_run_result, command="result")
    cancel.set_defaults(handler=_run_cancel, command="cancel")


def _add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        action="store_true",
        help="write OUT as a directory (prefix) of part files, one per window, as they finish "
        "(OUT must not exist or be empty)",
    )


def _add_keep_files(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the job's input files on the provider (by default deleted once OUT is "
        "written; the output files stay)",
    )


def _add_files(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "files",
        "list (or --delete) the provider files of this machine's jobs",
        "List the files this machine's journal knows on the provider, inputs and results: "
        "id, kind, size, age, job. The provider's storage is limited (Netmind: 100 GB per "
        "organization). With --delete, delete them (files of batches still running are "
        "left). Deleting a job's output files means its answers cannot be downloaded again.",
    )
    p.add_argument("--job", help="only the files of this job (job-...)")
    p.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="only files the journal learned of at least DAYS days ago",
    )
    p.add_argument("--delete", action="store_true", help="delete the files listed")
    p.add_argument("--provider", choices=["netmind", "openai"], help="override auto-detection")
    p.set_defaults(handler=_run_files, command="files")


def _add_list(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "list",
        "list the recent jobs of this machine's journal",
        "List the newest jobs in the journal (NETMIND_FRAMES_HOME): id, when, rows, shards, "
        "input file. No network.",
    )
    p.add_argument("--limit", type=_positive, default=20, help="how many jobs (default 20)")
    p.set_defaults(handler=_run_list, command="list")


def _add_estimate(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "estimate",
        "what `complete` would send and cost, without sending anything",
        "Build the requests of IN exactly as `complete` would, and print the rows, shards, "
        "bytes, the approximate prompt tokens (request bytes / 4), the most completion "
        "tokens (rows x --max-tokens) and, with prices for --model (--prices or "
        "NETMIND_FRAMES_HOME/prices.json), the cost range at the batch rate and the upper "
        "bound at the synchronous rate. Nothing is uploaded. Takes the options of `complete`; "
        "with --max-cost, exit 1 when the upper bound is above it.",
    )
    p.add_argument("input", help=_IN_HELP)
    p.add_argument("output", nargs="?", help=argparse.SUPPRESS)  # complete's OUT
    _add_request_options(p)
    _add_connection_options(p, "estimate")
    _add_wait_options(p)
    _add_mode_options(p)
    _add_keep_files(p)
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(handler=_run_estimate, command="estimate")


def _add_doctor(subparsers: Any) -> None:
    p = _command(
        subparsers,
        "doctor",
        "check the configuration and what the service does against this library's assumptions",
        "Print the resolved configuration (never the key), check that the base URL answers, "
        "that the key is accepted and that files and batches can be listed. With --live, run "
        "one batch of one request (the cheapest documented model, max_tokens=1) and record "
        "what the service answers. One line per assumption: holds, differs (and how the "
        "library copes) or fails. Writes the full record as JSON (key redacted). Exit 0 when "
        "nothing fails, 1 otherwise.",
    )
    p.add_argument("--live", action="store_true", help="run one tiny real batch (costs a token)")
    _add_connection_options(p, "doctor")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call (default 10)")
    p.add_argument(
        "--wait", type=float, default=1800.0, help="with --live: longest wait for the batch"
    )
    p.add_argument(
        "--output", type=Path, help="the JSON record (default NETMIND_FRAMES_HOME/doctor/...)"
    )
    p.set_defaults(handler=_run_doctor, command="doctor")


# -- handlers ---------------------------------------------------------------------------------


def _run_complete(args: argparse.Namespace) -> int:
    from .build._source import FileSource
    from .frames._api import submit_file, sync_file, use_sync

    _timing.reset()
    _check_input(args.input)
    _check_output(args.output, args.dataset)
    rows = lambda: FileSource(args.input).n_rows  # noqa: E731 (read only for --mode auto)
    if use_sync(args.mode, args.max_concurrency, args.sync_threshold, rows):
        kwargs = _submit_kwargs(args)
        for batch_only in _BATCH_ONLY:
            kwargs.pop(batch_only, None)
        run = sync_file(args.input, args.prompt, max_concurrency=args.max_concurrency, **kwargs)
        return _finish(args, run.to_parquet(args.output, dataset=args.dataset))
    job = submit_file(args.input, args.prompt, **_submit_kwargs(args))
    if not args.quiet:
        print(f"job {job.id}: {job.n_rows} rows in {job.n_shards} shard(s)", file=sys.stderr)
    return _finish(args, _write(job, args), job)


#: Keywords of a batch submission that sync mode does not take.
_BATCH_ONLY = ("resubmit", "max_concurrent_batches", "poll_interval", "keep_files", "prices",
               "max_cost")  # fmt: skip


def _run_embed(args: argparse.Namespace) -> int:
    from .build._source import FileSource
    from .frames._api import submit_file, sync_file, use_sync

    _timing.reset()
    _check_input(args.input)
    _check_output(args.output, args.dataset)
    kwargs: dict[str, Any] = {
        "embed_column": args.column,
        "model": args.model,
        "model_column": args.model_column,
        "custom_id_column": args.custom_id_column,
        "prefix": args.prefix,
        "max_requests": args.max_requests,
        "max_bytes": args.max_bytes,
        "chunk_rows": args.window,
        "retries": args.retries,
        "progress": not args.quiet,
        "local": args.local,
        **_connection(args),
        **_parse_params(args.param, _owned(args)),
    }
    rows = lambda: FileSource(args.input).n_rows  # noqa: E731 (read only for --mode auto)
    if use_sync(args.mode, args.max_concurrency, args.sync_threshold, rows):
        run = sync_file(args.input, None, max_concurrency=args.max_concurrency, **kwargs)
        return _finish(args, run.to_parquet(args.output, dataset=args.dataset))
    job = submit_file(
        args.input,
        resubmit=args.resubmit,
        max_concurrent_batches=args.max_concurrent_batches,
        poll_interval=args.poll_interval,
        keep_files=args.keep_files,
        prices=args.prices,
        **kwargs,
    )
    return _finish(args, _write(job, args), job)


def _run_submit(args: argparse.Namespace) -> int:
    from .frames._api import submit_file

    if args.local:
        raise UsageError(_LOCAL_NOTE)
    _check_input(args.input)
    job = submit_file(args.input, args.prompt, **_submit_kwargs(args))
    print(job.id)
    if not args.quiet:
        print(
            f"{job.n_rows} rows in {job.n_shards} shard(s), {len(job.batch_ids)} submitted; "
            f"next: netmind-frames result {job.id} OUT.parquet",
            file=sys.stderr,
        )
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    from .jobs._status import job_shards

    record, states = job_shards(args.job, **_connection(args))
    when = datetime.fromtimestamp(record.created_at).isoformat(timespec="seconds")
    print(f"job {record.job_id}  submitted {when}  {record.n_rows} rows  input {record.input}")
    for s in states:
        counts = f"{s.completed} ok, {s.failed} failed of {s.total}" if s.batch_id else ""
        print(f"  shard {s.index + 1:>4}  {s.batch_id or '-':<40} {s.status:<14} {counts}")
    return EXIT_OK


def _run_wait(args: argparse.Namespace) -> int:
    _timing.reset()
    job = _attach(args)
    job.wait(timeout=args.timeout)
    if not args.quiet:
        print(f"job {job.id}: {job.status}", file=sys.stderr)
    _print_timings(args)
    return EXIT_OK


def _run_result(args: argparse.Namespace) -> int:
    _timing.reset()
    _check_output(args.output, args.dataset)
    job = _attach(args)
    return _finish(args, _write(job, args), job)


def _write(job: BatchJob, args: argparse.Namespace) -> dict[str, int]:
    """Wait for the job and write OUT; a failure to write says how to get the paid-for
    result again without paying twice (never the temporary file's name)."""
    try:
        return job.to_parquet(args.output, timeout=args.timeout, dataset=args.dataset)
    except OSError as exc:
        raise NetmindFramesError(
            f"job {job.id} finished, but writing {args.output} failed ({exc.strerror or exc}). "
            f"The answers stay on the provider: fix the cause, then get them without paying "
            f"again with: netmind-frames result {job.id} OUT.parquet"
        ) from exc


def _run_estimate(args: argparse.Namespace) -> int:
    from .frames._api import estimate_file

    _check_input(args.input)
    kwargs = _submit_kwargs(args)
    for unused in (*_BATCH_ONLY, "progress", "local", "retries", "prefix", "api_key", "chunk_rows"):
        if unused not in ("prices", "max_cost"):
            kwargs.pop(unused, None)
    found = estimate_file(args.input, args.prompt, **kwargs)
    print(json.dumps(found.as_dict()) if args.json else cli_words(str(found)))
    return EXIT_OK


def _run_files(args: argparse.Namespace) -> int:
    from .jobs._cleanup import delete_known, known_files

    files = known_files(args.job, args.older_than)
    now = time.time()
    for f in files:
        size = "?" if f.bytes is None else _size(f.bytes)
        age = (now - f.created_at) / 86400
        print(f"{f.file_id:<40} {f.kind:<6} {size:>9}  {age:6.1f} d  {f.job_id}")
    known = sum(f.bytes or 0 for f in files)
    print(f"{len(files)} file(s), {_size(known)} known", file=sys.stderr)
    if not args.delete or not files:
        return EXIT_OK
    done = delete_known(files, provider=args.provider)
    for f, why in done.left:
        print(f"left {f.file_id} ({f.kind}, {f.job_id}): {why}", file=sys.stderr)
    freed = sum(f.bytes or 0 for f in done.deleted)
    print(f"deleted {len(done.deleted)} file(s), {_size(freed)} known", file=sys.stderr)
    return EXIT_OK if not done.left else EXIT_ERROR


def _run_cancel(args: argparse.Namespace) -> int:
    from .jobs._status import cancel_job

    states = cancel_job(args.job, timeout=args.timeout, **_connection(args))
    statuses = ", ".join(f"{s.status}" for s in states)
    print(f"job {args.job}: cancelled ({statuses})", file=sys.stderr)
    return EXIT_OK


def _run_list(args: argparse.Namespace) -> int:
    from .jobs._journal import Journal
    from .transport._config import resolve_home

    jobs = Journal(resolve_home()).recent_jobs(args.limit)
    if jobs:
        print(f"{'JOB':<28}  {'FIRST SUBMITTED':<19}  {'ROWS':>14}  {'SHARDS':>11}  INPUT")
    for job in jobs:
        when = datetime.fromtimestamp(job.created_at).isoformat(timespec="seconds")
        flags = " cancelled" if job.cancelled else ""
        flags += " local" if job.local else ""
        print(
            f"{job.job_id}  {when}  {job.n_rows:>9} rows  {len(job.shard_keys):>4} shards  "
            f"{job.input or '(in-memory frame)'}{flags}"
        )
    if not jobs:
        print("no jobs in the journal yet", file=sys.stderr)
    return EXIT_OK


def _run_doctor(args: argparse.Namespace) -> int:
    from .jobs._doctor import doctor

    for name in ("timeout", "wait"):
        if not 0 < getattr(args, name) < float("inf"):
            raise UsageError(f"--{name} must be a number of seconds > 0")
    report = doctor(
        live=args.live,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        provider=args.provider,
        local=args.local,
        timeout=args.timeout,
        wait=args.wait,
        output=args.output,
    )
    print(report)
    return EXIT_OK if report.ok else EXIT_ERROR


# -- helpers ----------------------------------------------------------------------------------


def _submit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    params = _parse_params(args.param, _owned(args))
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    wait = {"poll_interval": getattr(args, "poll_interval", 30.0)}
    return {
        "model": args.model,
        "model_column": args.model_column,
        "params_column": args.params_column,
        "schema": _read_schema(args.schema),
        "prompt_column": args.prompt_column,
        "messages_column": args.messages_column,
        "custom_id_column": args.custom_id_column,
        "system": args.system,
        "prefix": args.prefix,
        "max_requests": args.max_requests,
        "max_bytes": args.max_bytes,
        "chunk_rows": args.window,
        "retries": args.retries,
        "resubmit": args.resubmit,
        "max_concurrent_batches": args.max_concurrent_batches,
        "progress": not args.quiet,
        "local": args.local,
        "keep_files": getattr(args, "keep_files", False),
        "prices": args.prices,
        "max_cost": args.max_cost,
        **wait,
        **_connection(args),
        **params,
    }


def _read_schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--schema {path}: {exc}") from exc
    if not isinstance(schema, dict):
        raise UsageError(f"--schema {path}: a JSON Schema object is expected")
    return schema


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    if args.local and args.command not in ("complete", "embed", "estimate"):
        raise UsageError(_LOCAL_NOTE)
    connection = {"base_url": args.base_url, "provider": args.provider}
    name = args.api_key_env
    if name != "NETMIND_API_KEY" and not os.environ.get(name):
        raise UsageError(f"--api-key-env {name}: the environment variable {name} is not set")
    if os.environ.get(name) and not args.local:
        connection["api_key"] = os.environ[name]
    return connection


def _check_input(location: str) -> None:
    """IN exists and can be read (before anything is built or sent). A URL or a directory
    (a Parquet dataset) is opened, which reads its listing and Parquet footers."""
    path = None if _is_url(location) else Path(location)
    if path is not None and not path.exists():
        raise UsageError(f"IN {path}: no such file")
    if path is not None and path.is_file():
        if not os.access(path, os.R_OK):
            raise UsageError(f"IN {path}: not a readable file")
        return
    from .build._source import FileSource

    try:
        FileSource(location, name="IN")
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _check_output(location: str, dataset: bool = False) -> None:
    """OUT can be written as Parquet, checked before anything is uploaded or paid for."""
    if _is_url(location) or dataset:
        from .results._sink import ParquetSink

        if not dataset and not location.lower().endswith(".parquet"):
            raise UsageError(
                f"OUT {location}: the result is written as Parquet, so OUT must end with "
                ".parquet (or pass --dataset for a directory of part files)"
            )
        try:
            ParquetSink(location, dataset=dataset, name="OUT")
        except InputError as exc:
            raise UsageError(str(exc)) from None
        return
    path = Path(location)
    if path.suffix.lower() != ".parquet":
        raise UsageError(
            f"OUT {path}: the result is written as Parquet, so OUT must end with .parquet "
            f"(e.g. {path.with_suffix('.parquet')})"
        )
    if path.is_dir():
        raise UsageError(f"OUT {path} is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"OUT {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"OUT {path}: the directory {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"OUT {path} exists and is not writable")


def _is_url(location: str) -> bool:
    """Whether IN or OUT is a URL (``s3://...``): opened through fsspec, not as a path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def _owned(args: argparse.Namespace) -> dict[str, str]:
    """Request keys --param may not set, and the option that sets each instead: every
    option of the command (``--param retries=3`` -> ``--retries``), plus those of the body
    the library writes itself."""
    internal = ("param", "command", "handler", "func", "debug", "input", "output")
    owned = {n: "--" + n.replace("_", "-") for n in vars(args) if n not in internal}
    owned.update(_OWNED_PARAMS)
    owned["input"] = "--column" if args.command == "embed" else "the rows of IN"
    return owned


def _attach(args: argparse.Namespace) -> BatchJob:
    from .frames._api import attach
    from .jobs._status import job_record

    connection = _connection(args)
    _, record = job_record(args.job)  # a clear error for an unknown id, before anything else
    if args.input is not None:
        _check_input(args.input)
    elif record.input and not _is_url(record.input) and not Path(record.input).exists():
        raise UsageError(
            f"job {args.job} was submitted from {record.input}, which is gone (moved or "
            "deleted?): pass the file's new path with --input IN"
        )
    options: dict[str, Any] = {}
    if getattr(args, "retries", None) is not None:
        options["retries"] = args.retries
    return attach(
        args.job,
        input=args.input,
        poll_interval=args.poll_interval,
        progress=not args.quiet,
        max_concurrent_batches=args.max_concurrent_batches,
        keep_files=getattr(args, "keep_files", False),
        prices=getattr(args, "prices", None),
        **connection,
        **options,
    )


def _finish(
    args: argparse.Namespace, counts: Mapping[str, int], job: BatchJob | None = None
) -> int:
    total = sum(counts.values())
    ok = counts.get("ok", 0)
    if not args.quiet:
        from .jobs._summary import format_summary

        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "ok")
        print(
            f"{ok} of {total} rows ok{f' ({others})' if others else ''}; wrote {args.output}",
            file=sys.stderr,
        )
        if job is not None:
            print(cli_words(format_summary(job.summary())), file=sys.stderr)
    _print_timings(args)
    return EXIT_OK if ok == total else EXIT_ROWS_FAILED


def _print_timings(args: argparse.Namespace) -> None:
    if getattr(args, "timings", False):
        print(f"timings {json.dumps(_timing.totals())}", file=sys.stderr)


def _parse_params(pairs: Sequence[str], owned: Mapping[str, str]) -> dict[str, Any]:
    """``--param KEY=JSON`` pairs as request parameters. A key an option owns is an error
    naming the option; a value that looks like JSON must parse; a bare word is a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes KEY=JSON, got {pair!r}")
        if key in owned or key.replace("-", "_") in owned:
            use = owned.get(key) or owned[key.replace("-", "_")]
            raise UsageError(f"--param {key}=...: {key} is set by {use}, not --param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            if value.lstrip()[:1] in ("[", "{", '"'):
                raise UsageError(
                    f"--param {key}={value}: not valid JSON ({exc.msg}); quote the whole "
                    f"pair for the shell, e.g. --param '{key}=[\"END\"]'"
                ) from None
            params[key] = value  # a bare word is a string: --param stop=END
    return params


def _days(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of days >= 0")
    return value


def _size(n: int) -> str:
    """Bytes in decimal units: ``950 B``, ``1.2 MB``."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # argparse would name this function instead of saying what is wrong
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    run()
