"""Structured outputs in a job: answers checked as results arrive, typed columns at the join.

Checking happens when a chunk's results are collected, so an answer that is not valid JSON or
fails the schema becomes a ``failed`` row with ``error_code="invalid_output"`` before retries
are decided (and ``retries`` re-asks it). The typed columns are made when the rows are joined
back: pandas dtypes for a DataFrame, stable Arrow types for a Parquet file (nested values as
JSON text, so every chunk of a file has the same schema).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ._results import mark_invalid_output
from ._schema import OutputSchema, parse_structured

_ARROW_TYPES: dict[str, pa.DataType] = {
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "boolean": pa.bool_(),
}


def check_answers(table: pa.Table, spec: OutputSchema) -> pa.Table:
    """``table`` (result columns) with its invalid ``ok`` answers marked ``invalid_output``."""
    parsed = parse_structured(table.column("response"), table.column("status"), spec)
    return mark_invalid_output(table, parsed.invalid, parsed.messages)


def typed_frame(results: pa.Table, spec: OutputSchema) -> pd.DataFrame:
    """One typed pandas column per top-level property (RangeIndex, one row per result)."""
    return parse_structured(results.column("response"), results.column("status"), spec).columns


def typed_arrow(results: pa.Table, spec: OutputSchema) -> dict[str, pa.Array]:
    """The typed columns as Arrow arrays whose types depend only on the schema."""
    frame = typed_frame(results, spec)
    return {name: _to_arrow(frame[name]) for name in spec.columns}


def _to_arrow(column: pd.Series) -> pa.Array:
    dtype = str(column.dtype)
    if dtype in _ARROW_TYPES:
        return pa.array(column, type=_ARROW_TYPES[dtype], from_pandas=True)
    if dtype == "object":
        # Lists and objects differ from chunk to chunk (and may be all-null in one): JSON
        # text keeps one column type for the whole file.
        values: list[Any] = column.tolist()
        text = [None if v is None else orjson.dumps(v).decode() for v in values]
        return pa.array(text, type=pa.large_string())
    mask = np.asarray(column.isna(), dtype=bool)
    return pa.array(column.astype(object).where(~mask, None).tolist(), type=pa.large_string())
