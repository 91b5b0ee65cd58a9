"""The ``netmind-frames serve`` subcommand: a thin shell over :class:`LocalBatchServer`."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import Any, TextIO

from ._server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PRESIGNED_TTL,
    ENDPOINTS,
    PRESIGNED_MAX_BYTES,
    LocalBatchServer,
    is_loopback,
)
from ._upstream import DEFAULT_RETRIES, check_upstream_url, redact

SERVE_SECONDS_PER_REQUEST = 0.003

_DESCRIPTION = """\
Run the local batch server: Netmind's and OpenAI's Batch + File APIs on one port, answered by
the deterministic echo engine. It is not Netmind: use it for offline work, tests and CI.

With --upstream it is a batch gateway: each request of a batch is sent to the synchronous
/chat/completions (or /embeddings) of an OpenAI-compatible server (vLLM, Ollama, a llama.cpp
server), --concurrency at a time, with retries on 429 (honouring Retry-After), 5xx and
connection errors. Use --data-dir so that a restart sends nothing that already finished.

Listening beyond loopback (--host 0.0.0.0) needs --api-key-env NAME: without a key, anyone
who can reach the port could use the server and spend the upstream's key. --no-auth accepts
that risk explicitly.

example:
  netmind-frames serve --port 8000 --seconds-per-request 0.01 --fail-rate 0.02
  NETMIND_LOCAL_KEY=secret netmind-frames serve --api-key-env NETMIND_LOCAL_KEY
  netmind-frames serve --upstream http://127.0.0.1:8001/v1 --concurrency 16 \\
      --data-dir ~/.cache/gateway --upstream-key-env VLLM_API_KEY
"""


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _endpoints(text: str) -> tuple[str, ...]:
    names = tuple(e.strip() for e in text.split(",") if e.strip())
    if not names or set(names) - set(ENDPOINTS):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated subset of {','.join(ENDPOINTS)}"
        )
    return names


def _models(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise argparse.ArgumentTypeError("must be a comma-separated list of model names")
    return names


def _url(text: str) -> str:
    try:
        return check_upstream_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_least(least: int) -> Any:
    def check(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}")
        return value

    return check


def _env_name(text: str) -> str:
    # The message must not echo the value: it may be a key pasted by mistake.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise argparse.ArgumentTypeError("must be the NAME of an environment variable, not a key")
    return text


class _RefuseSecret(argparse.Action):
    """``--api-key``: refused without echoing the value, so a pasted key stays off the screen."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        parser.error(
            "--api-key is not accepted; put the key in an environment variable "
            "and pass --api-key-env NAME"
        )


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object and return its parser.

    The parser's ``func`` default is :func:`run_serve`, which takes the parsed namespace.

    Example
    -------
    >>> parser = argparse.ArgumentParser(prog="netmind-frames")
    >>> _ = add_serve_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["serve", "--port", "8000"]).port
    8000
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the local batch server (Netmind + OpenAI dialects) until interrupted",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # "--api-key SECRET" must not pass as --api-key-env
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="port, 0 for any free one (default: 8000)"
    )
    p.add_argument(
        "--seconds-per-request",
        type=_non_negative,
        default=SERVE_SECONDS_PER_REQUEST,
        metavar="S",
        help=f"pace of each batch, 0 = immediate (default: {SERVE_SECONDS_PER_REQUEST}; "
        "ignored with --upstream)",
    )
    p.add_argument(
        "--fail-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction of requests that end as 500 error lines (default: 0)",
    )
    p.add_argument(
        "--fault-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction of HTTP calls answered 429/500 or dropped (default: 0)",
    )
    p.add_argument(
        "--corrupt-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction of json_schema chat answers replaced by broken JSON (default: 0)",
    )
    p.add_argument(
        "--processes",
        type=_at_least(0),
        default=2,
        metavar="N",
        help="worker processes that validate and answer large batches, so transfers keep "
        "their speed meanwhile; 0: all in the server process (default: 2)",
    )
    p.add_argument(
        "--process-min-bytes",
        type=_at_least(0),
        default=16_000_000,
        metavar="B",
        help="input files from this size on go to the worker processes (default: 16000000)",
    )
    p.add_argument(
        "--endpoints",
        type=_endpoints,
        default=ENDPOINTS,
        metavar="LIST",
        help="batch endpoints served, comma-separated; '/v1/chat/completions' alone "
        "emulates Netmind's 'embeddings coming soon' (default: both)",
    )
    p.add_argument(
        "--expire-after",
        type=_non_negative,
        default=None,
        metavar="S",
        help="seconds after creation at which unfinished batches expire (default: never)",
    )
    p.add_argument(
        "--cancel-after",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="seconds a cancelled batch stays 'cancelling' (Netmind: up to 600; default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of shuffle and injected failures")
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="keep files and batches here so they survive a restart (default: temporary)",
    )
    p.add_argument(
        "--api-key-env",
        type=_env_name,
        default=None,
        metavar="NAME",
        help="require the API key held in this environment variable (default: accept any key; "
        "needed with a --host beyond loopback, unless --no-auth)",
    )
    p.add_argument("--api-key", action=_RefuseSecret, help=argparse.SUPPRESS)
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="with a --host beyond loopback, accept any key: anyone who can reach the port "
        "can use the server (and spend the --upstream's key); refused without this flag",
    )
    p.add_argument(
        "--upstream",
        type=_url,
        default=None,
        metavar="URL",
        help="run batches against this OpenAI-compatible base URL, e.g. "
        "http://127.0.0.1:8001/v1 (default: the echo engine)",
    )
    p.add_argument(
        "--upstream-key-env",
        type=_env_name,
        default=None,
        metavar="NAME",
        help="send the API key held in this environment variable to the upstream",
    )
    p.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=8,
        metavar="N",
        help="upstream requests in flight at once (default: 8)",
    )
    p.add_argument(
        "--upstream-retries",
        type=_at_least(0),
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"retries of one upstream request before its error is recorded "
        f"(default: {DEFAULT_RETRIES})",
    )
    p.add_argument("--no-shuffle", action="store_true", help="keep output lines in input order")
    p.add_argument(
        "--no-echo-metadata",
        action="store_true",
        help="show every batch's metadata as null (a provider that does not store it)",
    )
    p.add_argument(
        "--no-echo-input-file-id",
        action="store_true",
        help="show every listed or retrieved batch's input_file_id as null",
    )
    p.add_argument(
        "--netmind-create-answer",
        action="store_true",
        help="answer batch creates as Netmind's guide shows (status 'pending', null ids)",
    )
    p.add_argument(
        "--queued-polls",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="the first N retrieves of each batch show status 'pending' (default: 0)",
    )
    p.add_argument(
        "--netmind-embeddings",
        action="store_true",
        help="also run /v1/embeddings batches under Netmind's prefix (Netmind: 'coming soon'; "
        "default: only under OpenAI's)",
    )
    p.add_argument(
        "--model-allowlist",
        type=_models,
        default=None,
        metavar="A,B",
        help="the models batches may name; others fail validation (default: any)",
    )
    p.add_argument(
        "--presigned-ttl",
        type=_non_negative,
        default=DEFAULT_PRESIGNED_TTL,
        metavar="S",
        help=f"lifetime of presigned URLs in seconds (default: {DEFAULT_PRESIGNED_TTL:g})",
    )
    p.add_argument(
        "--presigned-max-bytes",
        type=_at_least(1),
        default=PRESIGNED_MAX_BYTES,
        metavar="N",
        help=f"reject presigned uploads above N bytes with 413 (default: {PRESIGNED_MAX_BYTES})",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"reject request bodies above N bytes with 413 (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    p.set_defaults(func=run_serve)
    return p


def run_serve(
    args: argparse.Namespace, *, stop: threading.Event | None = None, out: TextIO | None = None
) -> int:
    """Run the server described by ``args`` until Ctrl-C, SIGTERM or ``stop`` is set.

    Returns the exit status: 2 when ``--api-key-env`` names an unset variable, or when a
    ``--host`` beyond loopback has neither ``--api-key-env`` nor ``--no-auth``.
    """
    out = out or sys.stdout
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(f"error: environment variable {args.api_key_env} is not set", file=sys.stderr)
            return 2
    upstream_key = None
    if args.upstream_key_env:
        if not args.upstream:
            print("error: --upstream-key-env needs --upstream", file=sys.stderr)
            return 2
        upstream_key = os.environ.get(args.upstream_key_env)
        if not upstream_key:
            print(
                f"error: environment variable {args.upstream_key_env} is not set", file=sys.stderr
            )
            return 2
    if api_key and args.no_auth:
        print("error: --no-auth and --api-key-env contradict each other", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        if not api_key and not args.no_auth:
            spend = " and spend the upstream's key" if args.upstream else ""
            print(
                f"error: --host {args.host} without --api-key-env: anyone who can reach port "
                f"{args.port} could use this server{spend}. Require a key with "
                "--api-key-env NAME (the key in that environment variable), or pass --no-auth "
                "to accept the risk",
                file=sys.stderr,
            )
            return 2
        print(
            f"warning: listening on {args.host}, reachable from other machines"
            + ("" if api_key else " by anyone (--no-auth)"),
            file=sys.stderr,
        )
    server = LocalBatchServer(
        host=args.host,
        port=args.port,
        seconds_per_request=args.seconds_per_request,
        fail_rate=args.fail_rate,
        fault_rate=args.fault_rate,
        corrupt_rate=args.corrupt_rate,
        endpoints=args.endpoints,
        expire_after=args.expire_after,
        cancel_after=args.cancel_after,
        seed=args.seed,
        data_dir=args.data_dir,
        api_key=api_key,
        shuffle=not args.no_shuffle,
        max_body_bytes=args.max_body_bytes,
        record_executions=False,
        upstream=args.upstream,
        upstream_api_key=upstream_key,
        concurrency=args.concurrency,
        upstream_retries=args.upstream_retries,
        echo_metadata=not args.no_echo_metadata,
        echo_input_file_id=not args.no_echo_input_file_id,
        netmind_create_answer=args.netmind_create_answer,
        queued_polls=args.queued_polls,
        netmind_embeddings=args.netmind_embeddings,
        model_allowlist=args.model_allowlist,
        presigned_ttl=args.presigned_ttl,
        presigned_max_bytes=args.presigned_max_bytes,
        allow_unauthenticated=args.no_auth,
        processes=args.processes,
        process_min_bytes=args.process_min_bytes,
    )
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with server:
            if args.upstream:
                engine = f"gateway to {redact(args.upstream)}, concurrency {args.concurrency}"
            else:
                engine = "echo engine"
            print(f"netmind-frames local batch server (not Netmind; {engine})", file=out)
            print(f"  Netmind base URL: {server.base_url}", file=out)
            print(f"  OpenAI base URL:  {server.openai_base_url}", file=out)
            key_note = f"from ${args.api_key_env}" if api_key else "any (e.g. 'local')"
            print(f"  API key:          {key_note}", file=out)
            if args.upstream:
                sent = f"from ${args.upstream_key_env}" if upstream_key else "none"
                print(f"  Upstream key:     {sent}", file=out)
            print("Press Ctrl-C to stop.", file=out, flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
