"""`netmind-frames complete` end to end against a separate `netmind-frames serve` process.

Generates Parquet files of N rows with ~300-character prompts, starts `netmind-frames serve`
(immediate engine: ``--seconds-per-request 0``) in its own process, runs `netmind-frames
complete` as a subprocess against it, and prints the client's wall time, rows/s, CPU time,
peak RSS (``ru_maxrss`` of the finished child), each stage's busy time (from ``--timings``)
and ``server_cpu_s``, the CPU time the server (its worker processes included) spent
meanwhile: on a machine with few cores the two share them. Stages overlap (uploads and
downloads run on several threads, parsing while files download), so busy times are summed
over threads: ``overlap`` is their sum over the wall time (1.0: one after another).

``--python`` runs the same job through the Python API instead (``pd.read_parquet`` then
``batch_complete``, in a fresh process) and prints what the call adds to the peak RSS (the
peak during the call minus the RSS before it; Linux's ``clear_refs`` resets the peak) beside
the input frame's deep memory.

    python benchmarks/bench_cli.py [--rows 1000000 5000000] [--chars 300] [--python] [--repeat N]

``--repeat N`` runs each size N times, each against a fresh server (the first run after the
machine idled is often slower: compare the runs after it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Serve, exe, measure, serve_process


def make_input(path: Path, rows: int, chars: int) -> None:
    """A Parquet file of ``rows`` rows: an id and a ~``chars``-character review, in pieces."""
    filler = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[: chars - 12]
    with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("review", pa.string())])) as w:
        for start in range(0, rows, 250_000):
            ids = np.arange(start, min(start + 250_000, rows), dtype=np.int64)
            text = [f"row {i:>7} {filler}" for i in ids.tolist()]
            w.write_table(pa.table({"id": ids, "review": text}))


def run_one(rows: int, chars: int, tmp: Path, serve: Serve, run: int = 0) -> dict[str, object]:
    source = tmp / f"in-{rows}.parquet"
    if not source.exists():
        make_input(source, rows, chars)
    out = tmp / f"out-{rows}-{run}.parquet"
    home = tmp / f"home-{rows}-{run}"
    env = os.environ | {"NETMIND_API_KEY": KEY, "NETMIND_FRAMES_HOME": str(home)}
    argv = [*exe(), "complete", str(source), str(out), "--prompt", "Review: {review}"]
    argv += ["--model", "m", "--max-tokens", "16", "--base-url", _base_url(serve)]
    argv += ["--poll-interval", "1", "--quiet", "--timings"]
    server_before = serve.cpu_s()
    measured = measure(argv, env)
    server_cpu = serve.cpu_s() - server_before
    match = re.search(r"^timings (.*)$", measured.stderr, re.M)
    phases = json.loads(match.group(1)) if match else {}
    assert pq.ParquetFile(out).metadata.num_rows == rows
    return {
        "rows": rows,
        "run": run + 1,
        "wall_s": round(measured.wall_s, 1),
        "rows_per_s": round(rows / measured.wall_s),
        "cpu_s": round(measured.cpu_s, 1),
        "server_cpu_s": round(server_cpu, 1),
        "peak_rss_mib": round(measured.rss_mib),
        "busy_s": phases,
        "overlap": round(sum(phases.values()) / measured.wall_s, 2),
    }


#: The Python variant, run in a fresh process: argv = input, base URL; prints one JSON line.
PYTHON_JOB = """
import json, re, sys, time
import pandas as pd
import netmind_frames
from netmind_frames import _timing

def rss(field):
    text = open("/proc/self/status").read()
    return int(re.search(rf"^{field}:\\s+(\\d+) kB", text, re.M).group(1)) * 1024

frame = pd.read_parquet(sys.argv[1])
deep = int(frame.memory_usage(deep=True).sum())
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the RSS now
before = rss("VmRSS")
start = time.perf_counter()
out = netmind_frames.batch_complete(
    frame, "Review: {review}", model="m", max_tokens=16, base_url=sys.argv[2],
    api_key="bench", poll_interval=1, progress=False,
)
wall = time.perf_counter() - start
peak = rss("VmHWM")
assert len(out) == len(frame) and (out["status"] == "ok").all()
busy = _timing.totals()
print(json.dumps({
    "rows": len(frame), "wall_s": round(wall, 1), "frame_deep_mib": round(deep / 2**20),
    "rss_before_mib": round(before / 2**20), "added_peak_mib": round((peak - before) / 2**20),
    "added_over_frame": round((peak - before) / deep, 2), "busy_s": busy,
    "overlap": round(sum(busy.values()) / wall, 2),
}))
"""


def _base_url(serve: Serve) -> str:
    return f"{serve.origin}/inference-api/openai/v1"


def run_python(rows: int, chars: int, tmp: Path, serve: Serve, run: int = 0) -> dict[str, object]:
    """The same job through ``batch_complete`` in a fresh process: its memory and time."""
    source = tmp / f"in-{rows}.parquet"
    if not source.exists():
        make_input(source, rows, chars)
    env = os.environ | {"NETMIND_FRAMES_HOME": str(tmp / f"home-py-{rows}-{run}")}
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_JOB, str(source), _base_url(serve)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"batch_complete failed ({proc.returncode}):\n{proc.stderr}")
    return {"python": True, "run": run + 1, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--python", action="store_true", help="run batch_complete instead")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size, each printed")
    args = parser.parse_args()
    run = run_python if args.python else run_one
    with tempfile.TemporaryDirectory(prefix="bench_cli-") as name:
        tmp = Path(name)
        results = []
        for rows in args.rows:
            for number in range(args.repeat):
                # A fresh server each run: on the last one's, the job would be found and
                # reattached, and nothing would run.
                with serve_process(tmp / f"server-{rows}-{number}") as serve:
                    results.append(run(rows, args.chars, tmp, serve, number))
                print(json.dumps(results[-1]), flush=True)
    if len(args.rows) >= 2 and args.repeat == 1 and not args.python:
        ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]  # type: ignore[operator]
        print(f"peak RSS ratio {results[-1]['rows']} / {results[0]['rows']} rows: {ratio:.2f}")


if __name__ == "__main__":
    main()
