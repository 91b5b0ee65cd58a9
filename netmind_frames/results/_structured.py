"""Structured outputs in a job: answers checked as results arrive, typed columns at the join.

Checking happens when a chunk's results are collected, so an answer that is not valid JSON or
fails the schema becomes a ``failed`` row with ``error_code="invalid_output"`` before retries
are decided (and ``retries`` re-asks it). The typed columns are made when the rows are joined
back: pandas dtypes for a DataFrame, stable Arrow types for a Parquet file (enums as text,
nested values as JSON text, so every chunk of a file has the same schema). The Arrow and
Polars front ends get native types (:mod:`._tables`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from ._results import mark_invalid_output
from ._schema import OutputSchema, parse_native, parse_structured


def check_answers(table: pa.Table, spec: OutputSchema) -> pa.Table:
    """``table`` (result columns) with its invalid ``ok`` answers marked ``invalid_output``."""
    parsed = parse_structured(table.column("response"), table.column("status"), spec)
    return mark_invalid_output(table, parsed.invalid, parsed.messages)


def typed_frame(results: pa.Table, spec: OutputSchema) -> pd.DataFrame:
    """One typed pandas column per top-level property (RangeIndex, one row per result)."""
    return parse_structured(results.column("response"), results.column("status"), spec).columns


def typed_arrow(results: pa.Table, spec: OutputSchema) -> dict[str, pa.Array]:
    """The typed columns as Arrow arrays whose types depend only on the schema, for a file
    written chunk by chunk: enums as text, lists and objects as JSON text (so an all-null
    chunk has the same schema as the others)."""
    columns = parse_native(results.column("response"), results.column("status"), spec).columns
    return {name: _stable(columns[name]) for name in spec.columns}


def _stable(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_dictionary(kind):
        return column.cast(pa.large_string())
    if pa.types.is_large_list(kind) or pa.types.is_struct(kind):
        return json_text(column.to_pylist())
    return column


def json_text(values: Sequence[Any]) -> pa.Array:
    """Lists and objects as JSON text (None stays null): how a file that must keep one schema
    whatever the answers holds them."""
    text = [None if v is None else orjson.dumps(v).decode() for v in values]
    return pa.array(text, type=pa.large_string())
