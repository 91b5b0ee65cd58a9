"""Looking things up in the input frame: a named column, a row's label, a text dtype.

Shared by the request builders (:mod:`._requests`, :mod:`._content`, :mod:`._custom_ids`,
:mod:`._lines`) so their errors name columns and rows the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from .._errors import ColumnError


def row_label(frame: pd.DataFrame, position: int) -> str:
    """``row <position> (index <label>)``: how errors name a row."""
    label = frame.index[position]
    if isinstance(label, np.generic):  # show 3, not np.int64(3)
        label = label.item()
    return f"row {position} (index {label!r})"


def get_column(frame: pd.DataFrame, name: str, role: str) -> pd.Series:
    """The column ``name``; a ``ColumnError`` (naming its ``role``) if missing or duplicated."""
    if name not in frame.columns:
        available = ", ".join(repr(c) for c in frame.columns)
        raise ColumnError(
            f"{role} column {name!r} is not in the frame; available columns: {available}",
            column=name,
        )
    column = frame[name]
    if isinstance(column, pd.DataFrame):
        raise ColumnError(f"{role} column {name!r} is duplicated in the frame", column=name)
    return column


def is_string_dtype(column: pd.Series) -> bool:
    """Whether ``column`` is text: a string dtype (pandas or Arrow), or object of only strings."""
    if isinstance(column.dtype, pd.StringDtype):
        return True
    if isinstance(column.dtype, pd.ArrowDtype):  # e.g. read_parquet(dtype_backend="pyarrow")
        kind = column.dtype.pyarrow_dtype
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    return column.dtype == object and pd.api.types.infer_dtype(column, skipna=False) == "string"
