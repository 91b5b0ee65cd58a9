"""Structured-output parsing rows/s: 100k JSON answers -> validated, typed columns.

Times ``parse_structured`` (pandas columns) and ``parse_native`` (the Arrow columns the
Arrow and Polars front ends get) on answers of a flat review schema (enum, number, integer,
boolean, array of strings, optional string), with 2% invalid answers, for a JSON Schema dict
and (if pydantic is installed) for the equivalent pydantic model, and prints the peak RSS.
A JSON Schema dict in the bulk subset is proven valid by Arrow (``results/_bulk.py``): the
line "proven in bulk" says how many rows never became Python objects. For comparison it
times what the one-by-one path costs in the same run: the orjson parse of every answer
alone, and the validation alone (jsonschema-rs over the whole list, or pydantic-core row by
row). Figures vary with the machine's load: compare within one run.

    python benchmarks/bench_schema.py --rows 100000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from netmind_frames.results._schema import (
    _collector_paused,
    output_schema,
    parse_native,
    parse_structured,
)

SCHEMA: dict[str, Any] = {
    "title": "Review",
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "spam": {"type": "boolean"},
        "topics": {"type": "array", "items": {"type": "string"}},
        "summary": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["sentiment", "confidence", "stars", "spam", "topics"],
    "additionalProperties": False,
}


def make_answers(rows: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    labels = ["positive", "negative", "neutral"]
    out = []
    for i in range(rows):
        doc = {
            "sentiment": labels[i % 3],
            "confidence": float(rng.random()),
            "stars": int(rng.integers(1, 6)),
            "spam": bool(i % 7 == 0),
            "topics": ["battery", "price"][: i % 3],
            "summary": None if i % 4 else "short summary of the review text",
        }
        if i % 50 == 0:
            doc["confidence"] = "high"  # 2% fail validation
        out.append(orjson.dumps(doc).decode())
    return pa.array(out, pa.large_string())


def pydantic_model() -> Any:
    try:
        import pydantic
    except ImportError:
        return None
    from typing import Literal

    class Review(pydantic.BaseModel):
        sentiment: Literal["positive", "negative", "neutral"]
        confidence: float = pydantic.Field(ge=0, le=1)
        stars: int = pydantic.Field(ge=1, le=5)
        spam: bool
        topics: list[str]
        summary: str | None = None

    return Review


def peak_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def best_of(runs: int, answers: pa.Array, status: pa.Array, schema: Any, parse: Any) -> float:
    spec = output_schema(schema)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        parsed = parse(answers, status, spec)
        best = min(best, time.perf_counter() - start)
    assert int(parsed.invalid.sum()) == (len(answers) + 49) // 50
    return best


def split(runs: int, answers: pa.Array, schema: Any) -> tuple[float, float]:
    """Best seconds of (parsing every answer with orjson, validating the parsed answers)."""
    spec = output_schema(schema)
    texts = answers.to_pylist()
    parse = check = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with _collector_paused():  # as parse_structured does
            docs = [orjson.loads(text) for text in texts]
        middle = time.perf_counter()
        failed = spec.failures(docs, texts)
        parse, check = min(parse, middle - start), min(check, time.perf_counter() - middle)
    assert len(failed) == (len(answers) + 49) // 50
    return parse, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    answers = make_answers(args.rows)
    status = pa.array(["ok"] * args.rows, pa.large_string())
    cases = [("JSON Schema dict", SCHEMA), ("pydantic model", pydantic_model())]
    for label, schema in cases:
        if schema is None:
            print(f"{label}: skipped (pydantic is not installed)")
            continue
        for into, parse in (("pandas", parse_structured), ("Arrow", parse_native)):
            seconds = best_of(args.runs, answers, status, schema, parse)
            print(f"{label:>17}: {args.rows:,} answers into {into} columns in {seconds:.3f} s = "
                  f"{args.rows / seconds:,.0f} rows/s")  # fmt: skip
        plan = output_schema(schema).plan
        proven = 0 if plan is None else int((plan.prove(answers).at >= 0).sum())
        print(f"{'':>17}  proven in bulk by Arrow: {proven:,} rows; the rest checked one by one")
        parse, check = split(args.runs, answers, schema)
        print(f"{'':>17}  for comparison, one by one: orjson parse alone {parse:.3f} s, "
              f"validation alone {check:.3f} s")  # fmt: skip
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
