"""Parse + join lines/s: a 1M-line batch result (output + error file) -> the joined frame.

The files have the shape an OpenAI-compatible server writes: shuffled lines, ~95% successes
in the output file, ~5% failures in the error file, half of them HTTP errors (shape a) and
half never executed (shape b). Times ``collect_results`` + ``join_results`` end to end, best
of a few runs, and prints the peak RSS.

Then it splits that time: the JSON reader alone (``pyarrow.json.read_json`` with the pruned
line schema the library uses), and the reader's floor on the same bytes (a schema of
``custom_id`` only: every byte is still tokenised, almost nothing is built). Lines/s depends
on bytes/line; OpenAI-shaped lines are ~500 bytes here, real ones often more.

    python benchmarks/bench_parse.py --rows 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from bench_build import make_frame, peak_rss_mib

from netmind_frames.build._requests import CHAT_ENDPOINT, RequestPlan, Shard
from netmind_frames.results._results import (
    CHAT_FORMAT,
    READ_OPTIONS,
    ShardOutcome,
    collect_results,
    join_results,
)

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
ANSWERS = [
    "positive",
    "negative",
    "neutral",
    "The review is positive: the customer recommends the product.",
    'Mostly negative; the "battery" complaint dominates.\nScore: 2/5',
]


def _join(*pieces: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*pieces, "")


def success_lines(ids: pa.Array, rng: np.random.Generator) -> pa.Array:
    """Success lines with every field a real chat.completion carries."""
    answers = pa.array([a.replace("\n", "\\n").replace('"', '\\"') for a in ANSWERS])
    answer = answers.take(pa.array(rng.integers(0, len(ANSWERS), len(ids))))
    prompt_tokens = pc.cast(pa.array(rng.integers(60, 120, len(ids))), pa.string())
    completion_tokens = pc.cast(pa.array(rng.integers(1, 30, len(ids))), pa.string())
    return _join(
        '{"id":"batch_req_', ids, '","custom_id":"', ids,
        '","response":{"status_code":200,"request_id":"req_', ids,
        '","body":{"id":"chatcmpl-', ids, '","object":"chat.completion","created":1764288000,',
        f'"model":"{MODEL}","choices":[{{"index":0,"message":{{"role":"assistant","content":"',
        answer, '","refusal":null},"logprobs":null,"finish_reason":"stop"}],',
        '"usage":{"prompt_tokens":', prompt_tokens, ',"completion_tokens":', completion_tokens,
        ',"total_tokens":100},"system_fingerprint":"fp_1"}},"error":null}\n',
    )  # fmt: skip


def http_error_lines(ids: pa.Array) -> pa.Array:
    """Shape (a): the request ran, the model API answered 400; top-level error null."""
    return _join(
        '{"id":"batch_req_', ids, '","custom_id":"', ids,
        '","response":{"status_code":400,"request_id":"req_', ids,
        '","body":{"error":{"message":"This model\'s maximum context length is 8192 tokens.",'
        '"type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}},'
        '"error":null}\n',
    )  # fmt: skip


def never_run_lines(ids: pa.Array) -> pa.Array:
    """Shape (b): never executed; response null, error {code, message}."""
    return _join(
        '{"id":"batch_req_', ids, '","custom_id":"', ids, '","response":null,"error":{"code":'
        '"batch_expired","message":"This request could not be executed before the completion '
        'window expired."}}\n',
    )  # fmt: skip


def write_files(rows: int, directory: Path, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)  # the server writes lines in any order
    failing = rng.random(rows) < 0.05
    ids = pc.cast(pa.array(order), pa.string())
    fail_ids = ids.filter(pa.array(failing[order]))
    shape_a = rng.random(len(fail_ids)) < 0.5
    files = {
        "output.jsonl": [success_lines(ids.filter(pa.array(~failing[order])), rng)],
        "error.jsonl": [
            http_error_lines(fail_ids.filter(pa.array(shape_a))),
            never_run_lines(fail_ids.filter(pa.array(~shape_a))),
        ],
    }
    paths = []
    for name, arrays in files.items():
        path = directory / name
        with path.open("wb") as out:
            for lines in arrays:
                _, offsets, data = lines.buffers()
                end = int(np.frombuffer(offsets, np.int32)[len(lines)])
                out.write(memoryview(data)[:end])
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    frame = make_frame(args.rows)
    positions = np.arange(args.rows, dtype=np.int64)
    plan = RequestPlan(CHAT_ENDPOINT, args.rows, (Shard(MODEL, b"", positions),))
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(args.rows, Path(tmp))
        size = sum(p.stat().st_size for p in files)
        print(f"lines: {args.rows:,} in {size / 2**20:,.0f} MiB (output + error file)")
        print(f"peak RSS before parsing: {peak_rss_mib():,.0f} MiB")
        best, best_cpu, ratio = float("inf"), float("inf"), float("inf")
        reading = _ReadClock()
        for _ in range(args.runs):
            start, cpu = time.perf_counter(), time.process_time()
            with reading:
                table = collect_results(plan, [ShardOutcome(positions, "expired", files)])
                out = join_results(frame, table)
            seconds = time.perf_counter() - start
            best = min(best, seconds)
            best_cpu = min(best_cpu, time.process_time() - cpu)
            ratio = min(ratio, seconds / reading.seconds)
        statuses = out["status"].value_counts().to_dict()
        print(f"parse + join: {best:.3f} s  ->  {args.rows / best:,.0f} lines/s, "
              f"{size / best / 2**20:,.0f} MiB/s (CPU time {best_cpu:.3f} s)  "
              f"{statuses}")  # fmt: skip
        # The reader's own calls inside the same run: on a shared machine this ratio is far
        # steadier than one against a separate run of the reader.
        print(f"parse + join / its own JSON reading, same call (best run): {ratio:.2f}x")
        print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
        for name, schema in (
            ("JSON reader alone (pruned line schema)", CHAT_FORMAT.line_schema),
            ("JSON reader floor (custom_id only)", pa.schema([("custom_id", pa.string())])),
        ):
            seconds = min(_read_seconds(files, schema) for _ in range(args.runs))
            print(f"{name}: {seconds:.3f} s  ->  {args.rows / seconds:,.0f} lines/s, "
                  f"{size / seconds / 2**20:,.0f} MiB/s")  # fmt: skip
    print(f"bytes/line: {size / args.rows:,.0f}")


class _ReadClock:
    """Times every ``pyarrow.json.read_json`` call made inside ``with`` (as ``_results``
    makes them); ``seconds`` is their sum in the last block."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = pj.read_json

    def __enter__(self) -> None:
        self.seconds = 0.0

        def timed(*args: object, **kwargs: object) -> pa.Table:
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        pj.read_json = timed

    def __exit__(self, *exc: object) -> None:
        pj.read_json = self._original


def _read_seconds(files: list[Path], schema: pa.Schema) -> float:
    """Seconds for ``read_json`` over ``files`` with ``schema``, as ``_results`` calls it."""
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    start = time.perf_counter()
    for path in files:
        pj.read_json(path, read_options=READ_OPTIONS, parse_options=options)
    return time.perf_counter() - start


def front_ends() -> None:
    """``--front-ends``: parse + join onto pandas, Polars and Arrow (the join each front end
    does: ``joined_output``)."""
    import polars as pl

    from netmind_frames.build._source import as_source
    from netmind_frames.jobs._job import joined_output
    from netmind_frames.jobs._options import JobOptions

    parser = argparse.ArgumentParser(description="parse + join for pandas, Polars and Arrow")
    parser.add_argument("--front-ends", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    inputs = {"pandas": frame, "polars": pl.from_arrow(table), "arrow": table}
    positions = np.arange(args.rows, dtype=np.int64)
    plan = RequestPlan(CHAT_ENDPOINT, args.rows, (Shard(MODEL, b"", positions),))
    options = JobOptions(model=MODEL, max_bytes=1, prompt="{review}")
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(args.rows, Path(tmp))
        parse = float("inf")
        for _ in range(args.runs):  # the same code for every front end: timed once
            start = time.perf_counter()
            results = collect_results(plan, [ShardOutcome(positions, "expired", files)])
            parse = min(parse, time.perf_counter() - start)
    print(f"parse (every front end): {parse:.3f} s  ->  {args.rows / parse:,.0f} lines/s")
    for name, rows in inputs.items():
        source = as_source(rows)
        join = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            joined_output(source, args.rows, results, options, {})
            join = min(join, time.perf_counter() - start)
        print(f"{name:>6}: join {join:.3f} s; parse + join "
              f"{args.rows / (parse + join):,.0f} lines/s")  # fmt: skip


if __name__ == "__main__":
    import sys

    if "--front-ends" in sys.argv:
        front_ends()
    else:
        main()
