"""`netmind-frames complete` from and to object storage: a Parquet dataset on S3 (moto's S3
server on loopback) through a separate `netmind-frames serve`, written back as a dataset.

Generates a hive-partitioned dataset of N rows (``region=.../part-K.parquet``, 8 files) on a
moto S3 server started in this process, runs `netmind-frames complete s3://.../in/
s3://.../out/ --dataset` as a subprocess, and prints the wall time split by phase, rows/s and
the client's peak RSS: it stays flat as rows grow (the input is read window by window, file
by file; each window's part file is uploaded as it finishes).

    python benchmarks/bench_storage.py [--rows 200000 1000000] [--chars 300] [--window N]

Needs the extras [cloud] and moto[server] (the `test` extra has both).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import KEY, exe, local_serve, measure

FILES = 8
REGIONS = ("eu", "us")


def make_dataset(fs: object, prefix: str, rows: int, chars: int) -> None:
    """``rows`` rows (an id and a ~``chars``-character review) in ``FILES`` files under
    ``region=eu``/``region=us``, written straight to S3 in pieces."""
    filler = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[: chars - 12]
    schema = pa.schema([("id", pa.int64()), ("review", pa.string())])
    per_file = -(-rows // FILES)
    for k in range(FILES):
        region = REGIONS[k * len(REGIONS) // FILES]
        first, last = k * per_file, min((k + 1) * per_file, rows)
        with (
            fs.open(f"{prefix}/region={region}/part-{k}.parquet", "wb") as f,  # type: ignore[attr-defined]
            pq.ParquetWriter(f, schema) as w,
        ):
            for start in range(first, last, 100_000):
                ids = np.arange(start, min(start + 100_000, last), dtype=np.int64)
                text = [f"row {i:>7} {filler}" for i in ids.tolist()]
                w.write_table(pa.table({"id": ids, "review": text}, schema=schema))


def run_one(rows: int, args: argparse.Namespace, fs: object, env: dict[str, str],
            tmp: Path, base_url: str) -> dict[str, object]:  # fmt: skip
    prefix = f"bench/in-{rows}"
    make_dataset(fs, prefix, rows, args.chars)
    out = f"s3://bench/out-{rows}"
    env = env | {"NETMIND_API_KEY": KEY, "NETMIND_FRAMES_HOME": str(tmp / f"home-{rows}")}
    argv = [*exe(), "complete", f"s3://{prefix}/", out, "--dataset"]
    argv += ["--prompt", "Review: {review}", "--model", "m", "--max-tokens", "16"]
    argv += ["--base-url", base_url, "--poll-interval", "1", "--quiet", "--timings"]
    if args.window:
        argv += ["--window", str(args.window)]
    run = measure(argv, env)
    match = re.search(r"^timings (.*)$", run.stderr, re.M)
    parts = [p for p in fs.ls(out.removeprefix("s3://"), detail=False) if p.endswith(".parquet")]  # type: ignore[attr-defined]
    written = sum(pq.ParquetFile(fs.open(p, "rb")).metadata.num_rows for p in parts)  # type: ignore[attr-defined]
    assert written == rows, (written, rows)
    for name in (*fs.find(prefix), *fs.find(out.removeprefix("s3://"))):  # type: ignore[attr-defined]
        fs.rm(name)  # type: ignore[attr-defined]  # moto keeps objects in this process's memory
    return {
        "rows": rows,
        "part_files": len(parts),
        "wall_s": round(run.wall_s, 1),
        "rows_per_s": round(rows / run.wall_s),
        "cpu_s": round(run.cpu_s, 1),
        "peak_rss_mib": round(run.rss_mib),
        "phases_s": json.loads(match.group(1)) if match else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--window", type=int, help="--window of the CLI (default its own)")
    args = parser.parse_args()
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit("needs s3fs and moto[server]: pip install -e '.[test]'") from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, moto_port = moto.get_host_and_port()
    env = os.environ | {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{moto_port}",
    }
    os.environ.update(env)
    fs = s3fs.S3FileSystem()
    fs.mkdir("bench")
    with tempfile.TemporaryDirectory(prefix="bench_storage-") as name:
        tmp = Path(name)
        try:
            with local_serve(tmp / "server", env) as origin:
                base_url = f"{origin}/inference-api/openai/v1"
                results = [run_one(rows, args, fs, env, tmp, base_url) for rows in args.rows]
        finally:
            moto.stop()
    for result in results:
        print(json.dumps(result))
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]  # type: ignore[operator]
        print(f"peak RSS ratio {results[-1]['rows']} / {results[0]['rows']} rows: {ratio:.2f}")


if __name__ == "__main__":
    main()
