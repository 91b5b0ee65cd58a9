"""Custom ids: each row's ``custom_id`` (its position, or a validated user id) and back.

A request line carries its row's id; an answer's id maps back to the row's position
(:meth:`~netmind_frames._requests.RequestPlan.positions_of`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import RowError
from ._frame import get_column, is_string_dtype, row_label

_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def position_ids(n_rows: int, first: int = 0) -> pa.Array:
    """The default ids, ``str(first + i)`` for row ``i``, as a large_string array."""
    return pc.cast(pa.array(np.arange(first, first + n_rows, dtype=np.int64)), pa.large_string())


def user_ids(frame: pd.DataFrame, name: str) -> tuple[pa.Array, pd.Index]:
    """Validated user ids (large_string, and as an Index): non-null, unique, short, plain."""
    column = get_column(frame, name, "custom_id")
    nulls = np.flatnonzero(np.asarray(column.isna(), dtype=bool))
    if nulls.size:
        position = int(nulls[0])
        raise RowError(f"{row_label(frame, position)}: custom_id is null", position=position)
    if pd.api.types.is_integer_dtype(column.dtype):
        column = column.astype(str)
    elif not is_string_dtype(column):
        column = pd.Series(_ids_as_str(frame, name, column), dtype=object)
    ids = pa.array(column, type=pa.large_string(), from_pandas=True)
    bad = np.flatnonzero(~np.asarray(pc.match_substring_regex(ids, _ID_PATTERN), dtype=bool))
    if bad.size:
        position = int(bad[0])
        raise RowError(
            f"{row_label(frame, position)}: custom_id {ids[position].as_py()!r} must be 1 to "
            "64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
            position=position,
        )
    index = pd.Index(ids.to_numpy(zero_copy_only=False))
    _check_unique(frame, index)
    return ids, index


def check_custom_ids(frame: pd.DataFrame, name: str) -> None:
    """Check a ``custom_id_column`` over the whole frame (non-null, unique, well-formed)."""
    user_ids(frame, name)


def _ids_as_str(frame: pd.DataFrame, name: str, column: pd.Series) -> list[str]:
    """Ids of a mixed (object) column: strings stay, integers become strings, else an error."""
    out = []
    for position, value in enumerate(column.array):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise RowError(
                f"{row_label(frame, position)}: custom_id in column {name!r} is a "
                f"{type(value).__name__} ({value!r}); ids must be strings or integers",
                position=position,
            )
        out.append(value)
    return out


def _check_unique(frame: pd.DataFrame, index: pd.Index) -> None:
    if index.is_unique:
        return
    duplicated = np.flatnonzero(index.duplicated(keep=False))
    value = index[duplicated[0]]
    rows = np.flatnonzero(index == value)
    shown = ", ".join(row_label(frame, int(p)) for p in rows[:5])
    raise RowError(
        f"custom_id {value!r} is used by {len(rows)} rows: {shown}; ids must be unique "
        f"({len(index) - len(index.unique())} duplicate(s) in all)",
        position=int(rows[1]),
    )


#: 10 .. 10**18: a number's count of decimal digits is 1 + how many of these it reaches.
_POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)


def default_positions(ids: pa.Array, n_rows: int, first: int = 0) -> np.ndarray:
    """Position ids -> int64 positions (``id - first``); anything not spelled exactly
    ``str(position)``, or outside ``first .. first + n_rows``, -> -1."""
    try:
        numbers = pc.cast(ids, pa.int64()).fill_null(-1)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = None  # some id is not an integer at all: check them one by one, below
    if numbers is not None:
        positions = np.array(numbers.to_numpy(zero_copy_only=False), dtype=np.int64)
        # Canonical iff as long as its decimal digits: a sign, leading zeros or any other
        # spelling the cast accepts ("+7", "007", "0x7") is longer than str(number).
        digits = np.searchsorted(_POWERS_OF_TEN, positions, side="right") + 1
        lengths = np.asarray(pc.binary_length(ids).fill_null(0), dtype=np.int64)
        canonical = (lengths == digits) & np.asarray(ids.is_valid(), dtype=bool)
        positions[~canonical] = -1
    else:
        valid = pc.and_kleene(
            pc.is_valid(ids), pc.match_substring_regex(ids, r"^(0|[1-9][0-9]{0,17})$")
        )
        numbers = pc.cast(pc.if_else(valid, ids, "-1"), pa.int64())
        positions = np.array(numbers.to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown = (positions < first) | (positions >= first + n_rows)
    positions -= first
    positions[unknown] = -1
    return positions


def as_string_array(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Answer ids as one (large_)string array, whatever Arrow type they were read as."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.large_string())
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = pc.cast(ids, pa.large_string())
    return ids
