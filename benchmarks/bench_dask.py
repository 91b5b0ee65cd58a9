"""Dask (``ddf.netmind.batch_complete``) against the single-process CLI, same data, same run.

Generates a Parquet file of N rows with ~300-character prompts (``bench_cli.make_input``:
250,000-row row groups), starts `netmind-frames serve` (immediate engine) in its own process,
then, one after the other:

* the CLI: `netmind-frames complete IN OUT` as a subprocess (wall, rows/s, peak RSS);
* Dask: a ``distributed.LocalCluster`` of worker processes (one thread each), one partition per
  row group read on the workers, ``ddf.netmind.batch_complete(...)`` then ``to_parquet`` (also
  on the workers); wall from the call to the written dataset, rows/s, the peak RSS of each
  worker and of the driver.

    python benchmarks/bench_dask.py [--rows 10000000] [--workers 2] [--concurrent 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, exe, local_serve, measure
from bench_cli import make_input


def run_cli(source: Path, tmp: Path, base_url: str, concurrent: int) -> dict[str, Any]:
    out = tmp / "cli-out.parquet"
    env = os.environ | {"NETMIND_API_KEY": KEY, "NETMIND_FRAMES_HOME": str(tmp / "home-cli")}
    argv = [*exe(), "complete", str(source), str(out), "--prompt", "Review: {review}"]
    argv += ["--model", "m", "--max-tokens", "16", "--base-url", base_url, "--quiet"]
    argv += ["--poll-interval", "1", "--max-concurrent-batches", str(concurrent)]
    run = measure(argv, env)
    rows = pq.ParquetFile(out).metadata.num_rows
    return {
        "engine": "cli",
        "rows": rows,
        "wall_s": round(run.wall_s, 1),
        "rows_per_s": round(rows / run.wall_s),
        "cpu_s": round(run.cpu_s, 1),
        "peak_rss_mib": round(run.rss_mib),
    }


def _row_group(path: str, number: int) -> Any:
    return pq.ParquetFile(path).read_row_group(number).to_pandas()


def _peak_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_dask(
    source: Path, tmp: Path, base_url: str, workers: int, concurrent: int
) -> dict[str, Any]:
    import dask.dataframe as dd
    import distributed

    import netmind_frames  # noqa: F401  (registers ddf.netmind)

    home = tmp / "home-dask"
    home.mkdir(mode=0o700)
    os.environ["NETMIND_FRAMES_HOME"] = str(home)  # the workers inherit it
    groups = pq.ParquetFile(source).metadata.num_row_groups
    with (
        distributed.LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ddf = dd.from_map(_row_group, [str(source)] * groups, range(groups))
        start = time.perf_counter()
        out = ddf.netmind.batch_complete(
            "Review: {review}",
            model="m",
            max_tokens=16,
            base_url=base_url,
            api_key=KEY,
            poll_interval=1,
            progress=False,
            max_concurrent_batches=concurrent,
        )
        out.to_parquet(tmp / "dask-out")
        wall = time.perf_counter() - start
        per_worker = sorted(client.run(_peak_rss_mib).values())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp / "dask-out").glob("*.parquet"))
    return {
        "engine": f"dask ({workers} workers)",
        "rows": rows,
        "partitions": groups,
        "wall_s": round(wall, 1),
        "rows_per_s": round(rows / wall),
        "peak_rss_mib_per_worker": per_worker,
        "peak_rss_mib_driver": _peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrent", type=int, default=64, help="max_concurrent_batches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_dask-") as name:
        tmp = Path(name)
        source = tmp / "in.parquet"
        make_input(source, args.rows, args.chars)
        with local_serve(tmp / "server") as origin:
            base_url = f"{origin}/inference-api/openai/v1"
            results = [
                run_cli(source, tmp, base_url, args.concurrent),
                run_dask(source, tmp, base_url, args.workers, args.concurrent),
            ]
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
