"""This library against the plain OpenAI SDK loop: same rows, same server, separate processes.

Starts `netmind-frames serve` (``--seconds-per-request 0``) on a free port, writes a Parquet
file of N rows with ~300-character reviews, then runs, each in its own process:

* **sdk**: the loop a user writes from the provider's guide: ``json.dumps`` per row, the file
  split at the size cap by hand (50,000 requests or 100 MB), ``files.create`` and
  ``batches.create`` per part, ``batches.retrieve`` every second until all are done,
  ``files.content`` of each output file, ``json.loads`` per line, merged back on
  ``custom_id``, written to Parquet;
* **lib**: ``netmind-frames complete IN OUT --prompt ...`` against the same server.

Both speak the server's OpenAI dialect (multipart upload) and poll every second. For each it
prints the client's CPU time (user + sys of the child, from ``wait4``), wall time and peak
RSS, best of ``--runs``, then the ratios sdk / lib.

    python benchmarks/bench_vs_sdk.py --rows 100000 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from _harness import KEY, exe, local_serve, measure
from bench_cli import make_input

PROMPT = "Review: {review}"
MODEL = "m"
MAX_TOKENS = 16
#: The caps a user reads in the provider's guide: requests and bytes per input file.
MAX_REQUESTS, MAX_BYTES = 50_000, 100 * 1024 * 1024


def sdk_client(source: str, output: str, base_url: str) -> None:
    """The plain OpenAI SDK loop, as the provider's guide shows it (runs in the child)."""
    import pandas as pd
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=KEY)
    frame = pd.read_parquet(source)
    lines = []
    for i, review in enumerate(frame["review"]):
        request = {
            "custom_id": f"request-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": PROMPT.format(review=review)}],
                "max_tokens": MAX_TOKENS,
            },
        }
        lines.append(json.dumps(request) + "\n")
    parts, part, size = [], [], 0  # split at the cap: one file is too big for 1M rows
    for line in lines:
        n = len(line.encode())
        if part and (len(part) == MAX_REQUESTS or size + n > MAX_BYTES):
            parts.append(part)
            part, size = [], 0
        part.append(line)
        size += n
    parts.append(part)
    batches = []
    for number, part in enumerate(parts):
        data = "".join(part).encode()
        uploaded = client.files.create(file=(f"part-{number}.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batches.append(batch.id)
    done: dict[str, Any] = {}
    while len(done) < len(batches):
        time.sleep(1)
        for batch_id in batches:
            if batch_id not in done:
                batch = client.batches.retrieve(batch_id)
                if batch.status in ("completed", "failed", "expired", "cancelled"):
                    done[batch_id] = batch
    answers: dict[str, str | None] = {}
    for batch in done.values():
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id is None:
                continue
            for line in client.files.content(file_id).text.splitlines():
                result = json.loads(line)
                body = (result.get("response") or {}).get("body") or {}
                choices = body.get("choices") or [{}]
                answers[result["custom_id"]] = choices[0].get("message", {}).get("content")
    frame["response"] = [answers.get(f"request-{i}") for i in range(len(frame))]
    frame.to_parquet(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000])
    parser.add_argument("--runs", type=int, default=2, help="best of this many runs each")
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--sdk-client", nargs=3, help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args()
    if args.sdk_client:
        sdk_client(*args.sdk_client)
        return
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} (1-min average)")
    with tempfile.TemporaryDirectory(prefix="bench_vs_sdk-") as name:
        tmp = Path(name)
        env = os.environ | {"NETMIND_API_KEY": KEY}
        with local_serve(tmp / "server") as origin:
            for rows in args.rows:
                compare(rows, args.runs, args.chars, tmp, f"{origin}/openai/v1", env)
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")


def compare(
    rows: int, runs: int, chars: int, tmp: Path, base_url: str, env: dict[str, str]
) -> None:
    """Run both clients ``runs`` times over ``rows`` rows and print the best of each."""
    source = tmp / f"in-{rows}.parquet"
    make_input(source, rows, chars)
    commands = {
        "sdk": [sys.executable, __file__, "--sdk-client", str(source), str(tmp / "sdk.parquet"),
                base_url],
        "lib": [*exe(), "complete", str(source), str(tmp / "lib.parquet"), "--prompt", PROMPT,
                "--model", MODEL, "--max-tokens", str(MAX_TOKENS), "--base-url", base_url,
                "--provider", "openai", "--poll-interval", "1", "--quiet"],
    }  # fmt: skip
    best: dict[str, dict[str, float]] = {}
    for number in range(runs):
        for who, argv in commands.items():  # alternate, so both see the same machine load
            home = {"NETMIND_FRAMES_HOME": str(tmp / f"home-{who}-{rows}-{number}")}
            run = measure(argv, env | home)
            figures = {"cpu_s": run.cpu_s, "wall_s": run.wall_s, "rss_mib": run.rss_mib}
            kept = best.setdefault(who, figures)
            for key, value in figures.items():
                kept[key] = min(kept[key], value)
    for who in commands:  # both answered every row
        answered = pq.read_table(tmp / f"{who}.parquet", columns=["response"]).column(0)
        assert answered.null_count == 0 and len(answered) == rows, who
    print(f"rows: {rows:,}")
    for who, figures in best.items():
        print(f"  {who}: client CPU {figures['cpu_s']:6.2f} s   wall {figures['wall_s']:6.2f} s   "
              f"peak RSS {figures['rss_mib']:6,.0f} MiB")  # fmt: skip
    sdk, lib = best["sdk"], best["lib"]
    print(f"  sdk / lib: client CPU {sdk['cpu_s'] / lib['cpu_s']:.2f}x   "
          f"wall {sdk['wall_s'] / lib['wall_s']:.2f}x   "
          f"peak RSS {sdk['rss_mib'] / lib['rss_mib']:.2f}x")  # fmt: skip
    print(json.dumps({"rows": rows, **{k: {n: round(v, 2) for n, v in f.items()}
                                        for k, f in best.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
