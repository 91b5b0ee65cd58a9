"""Push a 100,000-request batch through the local server's immediate echo engine.

Upload (openai ``files.create``) -> ``batches.create`` -> poll until completed -> download the
output (``files.content``). Prints seconds per phase, requests/s end to end and peak RSS.

    python benchmarks/bench_server.py [--rows 100000] [--chars 300] [--processes 2]

``--processes 0`` answers in the server's own runner thread (as before worker processes).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import openai
import orjson

from netmind_frames.server import LocalBatchServer


def build(rows: int, chars: int) -> bytes:
    """A JSONL input file of ``rows`` chat requests with prompts of about ``chars`` characters."""
    filler = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars]
    return b"".join(
        orjson.dumps(
            {
                "custom_id": str(i),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "echo-1",
                    "messages": [{"role": "user", "content": f"row {i}: {filler}"}],
                    "max_tokens": 16,
                },
            }
        )
        + b"\n"
        for i in range(rows)
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2, help="server worker processes")
    args = parser.parse_args()
    data = build(args.rows, args.chars)
    print(f"input: {args.rows:,} requests, {len(data) / 1e6:.1f} MB")
    phases: dict[str, float] = {}
    with (
        LocalBatchServer(processes=args.processes) as server,
        openai.OpenAI(
            base_url=server.openai_base_url, api_key=server.api_key, timeout=600
        ) as client,
    ):
        t0 = time.perf_counter()
        file = client.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch")
        t1 = time.perf_counter()
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
        t2 = time.perf_counter()
        if batch.status != "completed" or batch.output_file_id is None:
            sys.exit(f"batch ended {batch.status}: {batch.errors}")
        output = client.files.content(batch.output_file_id).content
        t3 = time.perf_counter()
    lines = output.count(b"\n")
    assert lines == args.rows, (lines, args.rows)
    phases = {"upload": t1 - t0, "run (create + poll)": t2 - t1, "download": t3 - t2}
    for name, seconds in phases.items():
        print(f"{name:>20}: {seconds:7.2f} s")
    total = t3 - t0
    print(f"{'total':>20}: {total:7.2f} s  ({args.rows / total:,.0f} requests/s end to end)")
    print(f"{'run only':>20}: {args.rows / phases['run (create + poll)']:,.0f} requests/s")
    print(f"output: {len(output) / 1e6:.1f} MB")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS (client + server, one process): {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
