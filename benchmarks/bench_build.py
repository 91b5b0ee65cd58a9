"""Build rows/s: a template over 1M rows of ~300-character prompts -> JSONL shards.

Prints the best of a few runs of ``build_plan`` (the bytes and the shards), then the time of
the shards' sha256 fingerprints (hashed on every core, as the spool does), and the peak RSS.

    python benchmarks/bench_build.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netmind_frames.build._requests import build_plan, fingerprint_of

TEXT = (
    "the product arrived on time and works as described but the battery life is shorter than "
    "I expected after two weeks of daily use I would still recommend it to friends because "
    "customer service answered quickly and replaced the charger without questions price was "
    "fair café naïve déjà vu 😀 really"
)
WORDS = TEXT.split(" ")
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
PARAMS = {"max_tokens": 5, "temperature": 0}
SPECIALS = [  # (share of rows from, to, replace, with): the characters JSON must escape
    (0.0, 0.05, "product", '"product"'),
    (0.05, 0.08, " but ", "\nbut "),
    (0.08, 0.085, " fair", "\tfair"),
]


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Review-like text of ~300 characters; 5% of rows hold quotes, 3% a newline, 0.5% a tab."""
    rng = np.random.default_rng(seed)
    vocabulary, per_row, parts = pa.array(WORDS), 52, []
    for start in range(0, rows, 100_000):  # in slices: keeps the generator's own peak low
        n = min(100_000, rows - start)
        words = vocabulary.take(pa.array(rng.integers(0, len(WORDS), size=n * per_row)))
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * per_row)
        text = pc.binary_join(pa.ListArray.from_arrays(offsets, words), " ")
        special = rng.random(n)
        for low, high, old, new in SPECIALS:
            changed = pc.replace_substring(text, old, new, max_replacements=1)
            text = pc.if_else(pa.array((special >= low) & (special < high)), changed, text)
        parts.append(text)
    text = pd.Series(pd.array(pa.chunked_array(parts).combine_chunks(), dtype="str"))
    return pd.DataFrame({"review": text, "stars": rng.integers(1, 6, size=rows)})


def peak_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    frame = make_frame(args.rows)
    length = frame["review"].str.len().mean()
    print(f"rows: {args.rows:,}  mean review length: {length:.0f} chars")
    print(f"peak RSS after generating the frame: {peak_rss_mib():,.0f} MiB")
    template = (
        "Classify the sentiment of this review ({stars} stars) as positive or negative:\n{review}"
    )
    best, plan = float("inf"), None
    for _ in range(args.runs):
        plan = None  # let the previous plan go before building the next
        start = time.perf_counter()
        plan = build_plan(
            frame, template, model=MODEL, system="Answer with one word.", params=PARAMS
        )
        best = min(best, time.perf_counter() - start)
    assert plan is not None
    size = sum(len(s.data) for s in plan.shards)
    print(f"build_plan: {best:.3f} s  ->  {args.rows / best:,.0f} rows/s  "
          f"({size / 2**20:,.0f} MiB in {len(plan.shards)} shards)")  # fmt: skip
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # as _spool does: every core at once
        list(pool.map(fingerprint_of, plan.shards))
    hashing = time.perf_counter() - start
    print(f"sha256 fingerprints: {hashing:.3f} s  ->  build + fingerprint "
          f"{args.rows / (best + hashing):,.0f} rows/s")  # fmt: skip
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")


def front_ends() -> None:
    """``--front-ends``: the same rows handed in as pandas, Polars and Arrow (the conversion a
    caller's frame goes through, ``as_source``, is inside the timing)."""
    import polars as pl

    from netmind_frames.build._source import as_source

    parser = argparse.ArgumentParser(description="build_plan from pandas, Polars and Arrow")
    parser.add_argument("--front-ends", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    inputs = {"pandas": frame, "polars": pl.from_arrow(table), "arrow": table}
    template = "Classify the sentiment of this review ({stars} stars):\n{review}"
    sizes = set()
    for name, rows in inputs.items():
        best = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            plan = build_plan(as_source(rows).frame, template, model=MODEL, params=PARAMS)
            best = min(best, time.perf_counter() - start)
            sizes.add(sum(len(s.data) for s in plan.shards))
            plan = None
        print(f"{name:>6}: build_plan {best:.3f} s  ->  {args.rows / best:,.0f} rows/s")
    assert len(sizes) == 1, "the front ends built different bytes"


if __name__ == "__main__":
    if "--front-ends" in sys.argv:
        front_ends()
    else:
        main()
