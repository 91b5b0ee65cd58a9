"""Build rows/s: a template over 1M rows of ~300-character prompts -> JSONL shards.

For each kind of text (``--kinds``) prints the best of a few runs of ``build_plan`` (the
bytes and the shards) beside the per-row ``json.dumps`` loop a user would write, measured in
the same run on the same frame, and their ratio. The kinds:

* ``plain``: review-like text; 5% of rows hold quotes, 3% a newline, 0.5% a tab;
* ``dense``: a third of the words carry a quote, a backslash or a newline;
* ``json``: each prompt embeds a pretty-printed JSON document (quotes on every key and
  string, newlines, escaped quotes and newlines inside strings);
* ``non_ascii``: Cyrillic, Chinese, Greek and emoji words, a few ASCII ones.

Then, for the plain kind, the time of the shards' sha256 fingerprints (hashed on every core,
as the spool does), and the peak RSS.

    python benchmarks/bench_build.py --rows 1000000 --kinds plain dense json non_ascii
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netmind_frames.build._requests import RequestPlan, build_plan, fingerprint_of

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


NON_ASCII = [
    "товар",
    "пришёл",
    "вовремя",
    "но",
    "батарея",
    "держит",
    "меньше",
    "чем",
    "ожидалось",
    "产品",
    "按时",
    "到达",
    "电池",
    "续航",
    "比",
    "预期",
    "短",
    "客服",
    "很快",
    "回复",
    "της",
    "μπαταρίας",
    "είναι",
    "μικρή",
    "😀",
    "👍",
    "café",
    "naïve",
    "ok",
]
KINDS = ("plain", "dense", "json", "non_ascii")


def make_frame(rows: int, seed: int = 0, kind: str = "plain") -> pd.DataFrame:
    """~300 characters of text of one of the ``KINDS`` per row, and a ``stars`` column."""
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, rows, 100_000):  # in slices: keeps the generator's own peak low
        n = min(100_000, rows - start)
        parts.append(_json_documents(rng, n) if kind == "json" else _words(rng, n, kind))
    text = pd.Series(pd.array(pa.chunked_array(parts).combine_chunks(), dtype="str"))
    return pd.DataFrame({"review": text, "stars": rng.integers(1, 6, size=rows)})


def _words(rng: np.random.Generator, n: int, kind: str) -> pa.Array:
    words, per_row = (NON_ASCII, 70) if kind == "non_ascii" else (WORDS, 52)
    if kind == "dense":  # each word as it is, or quoted, or with a backslash, or a newline
        words = [*words, *(f'"{w}"' for w in words), *(w + "\\" for w in words),
                 *(w + "\n" for w in words)]  # fmt: skip
    base = rng.integers(0, len(WORDS if kind != "non_ascii" else NON_ASCII), size=n * per_row)
    if kind == "dense":  # a third of the words carry a character JSON must escape
        base += len(WORDS) * np.where(rng.random(n * per_row) < 1 / 3,
                                      rng.integers(1, 4, size=n * per_row), 0)  # fmt: skip
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * per_row)
    chosen = pa.array(words).take(pa.array(base))
    text = pc.binary_join(pa.ListArray.from_arrays(offsets, chosen), " ")
    if kind == "plain":
        special = rng.random(n)
        for low, high, old, new in SPECIALS:
            changed = pc.replace_substring(text, old, new, max_replacements=1)
            text = pc.if_else(pa.array((special >= low) & (special < high)), changed, text)
    return text


def _json_documents(rng: np.random.Generator, n: int) -> pa.Array:
    """Pretty-printed JSON records of ~300 characters, as an extraction prompt embeds them."""
    vocabulary = pa.array(WORDS)

    def phrase(words: int) -> pa.Array:
        chosen = vocabulary.take(pa.array(rng.integers(0, len(WORDS), size=n * words)))
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * words)
        return pc.binary_join(pa.ListArray.from_arrays(offsets, chosen), " ")

    number = pc.cast(pa.array(rng.integers(1, 10**6, size=n)), pa.string())
    return pc.binary_join_element_wise(
        '{\n  "order_id": ', number, ',\n  "customer": {"name": "', phrase(2),
        '", "tier": "gold"},\n  "items": [{"sku": "A-', number, '", "qty": 2}],\n',
        '  "note": "', phrase(12), ' \\"fragile\\"\\n', phrase(8), '",\n  "path": "C:\\\\',
        phrase(1), '"\n}', "",
    )  # fmt: skip


def peak_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


TEMPLATE = (
    "Classify the sentiment of this review ({stars} stars) as positive or negative:\n{review}"
)
SYSTEM = "Answer with one word."


def json_dumps_lines(frame: pd.DataFrame) -> bytes:
    """The per-row loop a user writes: one ``json.dumps`` of each request, joined."""
    lines = []
    columns = frame["review"].tolist(), frame["stars"].tolist()
    for i, (review, stars) in enumerate(zip(*columns, strict=True)):
        content = TEMPLATE.format(review=review, stars=stars)
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": content},
            ],
            **PARAMS,
        }
        request = {"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions",
                   "body": body}  # fmt: skip
        lines.append(json.dumps(request, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def compare(frame: pd.DataFrame, runs: int, kind: str) -> tuple[float, RequestPlan]:
    """Best build_plan and best json.dumps loop on ``frame``; prints both and the ratio."""
    best, plan, baseline = float("inf"), None, float("inf")
    for _ in range(runs):
        plan = None  # let the previous plan go before building the next
        start = time.perf_counter()
        plan = build_plan(frame, TEMPLATE, model=MODEL, system=SYSTEM, params=PARAMS)
        middle = time.perf_counter()
        expected = json_dumps_lines(frame)
        best = min(best, middle - start)
        baseline = min(baseline, time.perf_counter() - middle)
    assert plan is not None
    data = b"".join(s.data for s in plan.shards)
    assert data == expected, f"{kind}: build_plan and json.dumps disagree"
    rows = len(frame)
    print(f"{kind:>10}: build_plan {best:.3f} s = {rows / best:>9,.0f} rows/s   "
          f"json.dumps {baseline:.3f} s = {rows / baseline:>7,.0f} rows/s   "
          f"{baseline / best:4.1f}x  ({len(data) / rows:,.0f} bytes/line, "
          f"{len(plan.shards)} shards)")  # fmt: skip
    return best, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()

    print(f"rows: {args.rows:,}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    for kind in args.kinds:
        frame = make_frame(args.rows, kind=kind)
        best, plan = compare(frame, args.runs, kind)
        del frame
        if kind != "plain":
            continue
        start = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # as _spool does: every core at once
            list(pool.map(fingerprint_of, plan.shards))
        hashing = time.perf_counter() - start
        print(f"{'':>10}  sha256 fingerprints: {hashing:.3f} s  ->  build + fingerprint "
              f"{args.rows / (best + hashing):,.0f} rows/s")  # fmt: skip
        del plan
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")


def front_ends() -> None:
    """``--front-ends``: the same rows handed in as pandas, Polars and Arrow (the conversion a
    caller's frame goes through, ``as_source``, is inside the timing). pandas and Polars twice:
    a frame made in memory (Polars from Arrow: its text bytes are shared with the builders) and
    one read from the same Parquet file (Polars' Parquet pages leave gaps between the rows'
    bytes, so its text is copied once)."""
    import tempfile

    import polars as pl
    import pyarrow.parquet as pq

    from netmind_frames.build._source import as_source

    parser = argparse.ArgumentParser(description="build_plan from pandas, Polars and Arrow")
    parser.add_argument("--front-ends", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with tempfile.TemporaryDirectory() as directory:
        pq.write_table(table, f"{directory}/rows.parquet")
        from_parquet = pl.read_parquet(f"{directory}/rows.parquet")
        pandas_parquet = pd.read_parquet(f"{directory}/rows.parquet")
    inputs = {"pandas": frame, "pandas (Parquet)": pandas_parquet, "polars": pl.from_arrow(table),
              "polars (Parquet)": from_parquet, "arrow": table}  # fmt: skip
    template = "Classify the sentiment of this review ({stars} stars):\n{review}"
    print(f"rows: {args.rows:,}  ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    sizes = set()
    for name, rows in inputs.items():
        best = cpu = float("inf")
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            plan = build_plan(as_source(rows).frame, template, model=MODEL, params=PARAMS)
            best = min(best, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)  # steadier than wall under load
            sizes.add(b"".join(s.data for s in plan.shards))
            plan = None
        print(f"{name:>16}: build_plan {best:.3f} s  ->  {args.rows / best:>9,.0f} rows/s  "
              f"(CPU {cpu:.3f} s)")  # fmt: skip
    assert len(sizes) == 1, "the front ends built different bytes"
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if "--front-ends" in sys.argv:
        front_ends()
    else:
        main()
