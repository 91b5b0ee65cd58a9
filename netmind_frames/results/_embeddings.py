"""Embeddings output lines -> an Arrow table -> joined DataFrame.

The same rules as chat results (``_results``): a line is a success iff its ``error`` is null
and its status code is 2xx; rows without a line take their status from their batch. The
answer fields are ``response.body.data[0].embedding`` and ``response.body.usage.prompt_tokens``.
Files are read by ``pyarrow.json`` with an explicit schema (vectors straight into float32), or
by the tolerant per-line parser, which also decodes ``encoding_format="base64"`` vectors.

Result columns: ``embedding``, ``prompt_tokens``, ``error_code``, ``error_message``,
``status``. In the Arrow table ``embedding`` is ``fixed_size_list<float32>[d]`` when every
vector has the same length ``d`` (else ``list<float32>``), null for rows without one. In the
joined DataFrame it is, by default, an ``object`` column of read-only 1-D ``float32`` NumPy
arrays (views into one ``(n, d)`` matrix; ``None`` where missing), so ``np.stack(column)``
gives the matrix; ``embedding_dtype="arrow"`` keeps the Arrow type (``pd.ArrowDtype``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from ..build._requests import RequestPlan
from ._results import LineFormat, ShardOutcome, check_result_columns, collect_lines

__all__ = [
    "EMBEDDING_COLUMNS",
    "check_embedding_columns",
    "collect_embeddings",
    "embedding_matrix",
    "join_embeddings",
]

EMBEDDING_COLUMNS = ("embedding", "prompt_tokens", "error_code", "error_message", "status")
_VECTOR = pa.list_(pa.float32())
_ERROR = pa.struct([("code", pa.string()), ("type", pa.string()), ("message", pa.string())])
_DATA = pa.struct([("embedding", _VECTOR)])
_BODY = pa.struct(
    [
        ("data", pa.list_(_DATA)),
        ("usage", pa.struct([("prompt_tokens", pa.int64())])),
        ("error", _ERROR),
    ]
)
_LINE_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("response", pa.struct([("status_code", pa.int64()), ("body", _BODY)])),
        ("error", _ERROR),
    ]
)
_ANSWERS = pa.schema([("embedding", _VECTOR), ("prompt_tokens", pa.int64())])


def _arrow_answers(body: pa.Array) -> list[pa.Array]:
    data = pc.struct_field(body, "data")
    # list_element(..., 0) raises on an empty list: take by offsets where there is one.
    lengths = np.asarray(pc.list_value_length(data).fill_null(0), dtype=np.int64)
    offsets = np.asarray(data.offsets, dtype=np.int64)[:-1]
    first = data.values.take(pa.array(offsets, mask=lengths == 0))
    usage = pc.struct_field(body, "usage")
    return [pc.struct_field(first, "embedding"), pc.struct_field(usage, "prompt_tokens")]


def _line_answers(body: dict[str, Any]) -> tuple[Any, ...]:
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    usage = body.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    return _vector(first.get("embedding")), tokens


def _vector(value: Any) -> list[float] | None:
    """A JSON vector (a list of numbers, or base64 of little-endian float32) as floats."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        if len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype="<f4").tolist()
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return [float(v) for v in value]
    return None


EMBEDDINGS_FORMAT = LineFormat(_LINE_SCHEMA, _ANSWERS, _arrow_answers, _line_answers)


def collect_embeddings(plan: RequestPlan, outcomes: Sequence[ShardOutcome]) -> pa.Table:
    """One row per frame row (``plan.n_rows``), in frame order, with the EMBEDDING_COLUMNS.

    Success, failure and missing rows follow :func:`netmind_frames._results.collect_results`.
    A success line without a usable vector counts as ``failed`` / ``invalid_output``.

    Example
    -------
    >>> table = collect_embeddings(plan, [ShardOutcome(shard.positions, "completed", [out])])
    >>> table.column("embedding").type
    FixedSizeListType(fixed_size_list<item: float>[256])
    """
    table = collect_lines(plan, outcomes, EMBEDDINGS_FORMAT)
    vectors = table.column("embedding").combine_chunks()
    status = table.column("status").combine_chunks()
    empty = pc.and_(pc.equal(status, "ok"), pc.is_null(vectors))
    if pc.any(empty).as_py():
        mask = np.asarray(empty, dtype=bool)
        updates = {
            "status": "failed",
            "error_code": "invalid_output",
            "error_message": "The answer has no embedding vector.",
        }
        for name, value in updates.items():
            column = table.column(name)
            values = pc.if_else(pa.array(mask), pa.scalar(value, column.type), column)
            table = table.set_column(table.column_names.index(name), name, values)
    return table.set_column(0, "embedding", _fixed_size(vectors))


def _fixed_size(vectors: pa.Array) -> pa.Array:
    """``fixed_size_list<float32>[d]`` when every present vector has length ``d``."""
    lengths = pc.list_value_length(vectors).drop_null()
    if len(lengths) == 0:
        return vectors
    low, high = pc.min_max(lengths).values()
    if low.as_py() != high.as_py() or low.as_py() == 0:
        return vectors
    size = int(low.as_py())
    valid = np.asarray(vectors.is_valid(), dtype=bool)
    flat = np.zeros((len(vectors), size), dtype=np.float32)
    flat[valid] = np.asarray(vectors.flatten(), dtype=np.float32).reshape(-1, size)
    mask = pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), size, mask=mask)


def embedding_matrix(vectors: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The ``(n, d)`` float32 matrix of a fixed-size ``embedding`` column; NaN rows where null."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    if not pa.types.is_fixed_size_list(vectors.type):
        raise InputError("the vectors have different lengths; there is no single matrix")
    size = vectors.type.list_size
    flat = np.asarray(vectors.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    matrix = flat[vectors.offset * size : (vectors.offset + len(vectors)) * size]
    matrix = matrix.reshape(len(vectors), size).copy()
    matrix[~np.asarray(vectors.is_valid(), dtype=bool)] = np.nan
    return matrix


def check_embedding_columns(frame: pd.DataFrame, prefix: str = "") -> None:
    """Raise :class:`ColumnError` if a (prefixed) embedding result column is in ``frame``."""
    check_result_columns(frame, prefix, columns=EMBEDDING_COLUMNS)


def join_embeddings(
    frame: pd.DataFrame,
    results: pa.Table,
    prefix: str = "",
    *,
    embedding_dtype: Literal["numpy", "arrow"] = "numpy",
) -> pd.DataFrame:
    """A new frame: the input's columns, index and order, plus the embedding result columns.

    ``embedding`` holds float32 NumPy arrays (``None`` where missing), or with
    ``embedding_dtype="arrow"`` stays an Arrow list column; ``prompt_tokens`` is ``Int64``
    and the strings ``string[pyarrow]``. The caller's frame is never modified.
    """
    if embedding_dtype not in ("numpy", "arrow"):
        raise InputError(f"embedding_dtype must be 'numpy' or 'arrow', not {embedding_dtype!r}")
    check_embedding_columns(frame, prefix)
    if results.num_rows != len(frame):
        raise InputError(f"{results.num_rows} results for a frame of {len(frame)} rows")
    out = frame.copy(deep=False)
    vectors = results.column("embedding").combine_chunks()
    if embedding_dtype == "arrow":
        out[prefix + "embedding"] = pd.array(vectors, dtype=pd.ArrowDtype(vectors.type))
    else:
        out[prefix + "embedding"] = _numpy_cells(vectors)
    tokens = results.column("prompt_tokens").combine_chunks()
    mask = np.asarray(tokens.is_null(), dtype=bool)
    data = np.asarray(tokens.fill_null(0), dtype=np.int64)
    out[prefix + "prompt_tokens"] = pd.arrays.IntegerArray(data, mask)
    for name in ("error_code", "error_message", "status"):
        column = pc.cast(results.column(name), pa.large_string())
        out[prefix + name] = pd.array(column, dtype=pd.StringDtype("pyarrow"))
    return out


def _numpy_cells(vectors: pa.Array) -> np.ndarray:
    cells = np.empty(len(vectors), dtype=object)
    valid = np.asarray(vectors.is_valid(), dtype=bool)
    if pa.types.is_fixed_size_list(vectors.type):
        matrix = embedding_matrix(vectors)
        matrix.setflags(write=False)
        rows = list(matrix)
    else:
        rows = [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors.to_pylist()]
    cells[:] = rows
    cells[~valid] = None
    return cells
