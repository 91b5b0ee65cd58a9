"""JSON string escaping of Arrow UTF-8 arrays, vectorised with NumPy (no per-row Python).

The request builder's hot path: every variable value of a request line goes through
:func:`json_escape`, which scans the raw bytes once and rewrites only the rows that need it.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa

from .._errors import InputError

BINARY = pa.large_binary()

# Bytes that must be escaped inside a JSON string: 1 = '"' or '\\' (prefix a backslash),
# 2 = control char with a short escape (\b \t \n \f \r), 3 = other control char (\u00XX).
# Non-ASCII bytes pass through: JSON text is UTF-8 and U+2028/U+2029 are legal in it.
_KIND = np.zeros(256, dtype=np.uint8)
_KIND[:0x20] = 3
_KIND[list(b"\b\t\n\f\r")] = 2
_KIND[[0x22, 0x5C]] = 1
_SHORT = np.zeros(256, dtype=np.uint8)
_SHORT[list(b"\b\t\n\f\r")] = list(b"btnfr")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def escape_constant(text: str, what: str) -> bytes:
    try:
        return orjson.dumps(text)[1:-1]
    except orjson.JSONEncodeError:
        raise InputError(f"the {what} is not encodable as UTF-8 (lone surrogate)") from None


def buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets rebased to 0, data bytes) of a large_binary array, zero-copy."""
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64, len(values) + 1, values.offset * 8)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buffer, np.uint8, stop - start, start) if stop > start else None
    return offsets - start, data if data is not None else np.zeros(0, np.uint8)


_BLOCK = 1 << 18  # bytes scanned at a time: the masks stay in the CPU cache (2x faster)


def _special_bytes(data: np.ndarray) -> np.ndarray:
    """Positions of the bytes JSON forbids raw in a string: control chars, '"' and '\\'."""
    mask = np.empty(min(_BLOCK, len(data)), dtype=bool)
    scratch = np.empty_like(mask)
    found = []
    for start in range(0, len(data), _BLOCK):
        block = data[start : start + _BLOCK]
        m, s = mask[: len(block)], scratch[: len(block)]
        np.less(block, 0x20, out=m)
        np.equal(block, 0x22, out=s)
        m |= s
        np.equal(block, 0x5C, out=s)
        m |= s
        if m.any():
            found.append(np.flatnonzero(m) + start)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def json_escape(values: pa.Array) -> list[pa.Array]:
    """JSON-escape UTF-8 strings (large_binary) without Python per row.

    Returns one array, or two that the line join concatenates with ``null_handling="skip"``:
    the input with the rows that need escaping masked out (zero-copy: a new validity bitmap),
    and those rows escaped (empty elsewhere). Usual text has few such rows, so the cost is
    one vectorised scan of the bytes plus work proportional to the rows that need escaping,
    and no copy of the clean rows.
    """
    offsets, data = buffers(values)
    special = _special_bytes(data)
    if special.size == 0:
        return [values]
    rows = np.unique(np.searchsorted(offsets, special, side="right") - 1)
    escaped_offsets, escaped_data = buffers(_escape_rows(values.take(pa.array(rows))))
    clean = np.ones(len(values), dtype=bool)
    clean[rows] = False
    validity = pa.array(clean).buffers()[1]
    kept = pa.Array.from_buffers(
        BINARY, len(values), [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    sizes = np.zeros(len(values) + 1, dtype=np.int64)
    sizes[rows + 1] = np.diff(escaped_offsets)
    fixed = pa.Array.from_buffers(
        BINARY, len(values), [None, pa.py_buffer(np.cumsum(sizes)), pa.py_buffer(escaped_data)]
    )
    return [kept, fixed]


def _escape_rows(values: pa.Array) -> pa.Array:
    """Escape every special byte of a (dense) large_binary array with one ``np.insert``."""
    offsets, data = buffers(values)
    special = _special_bytes(data)
    kind = _KIND[data[special]]
    is_hex = kind == 3
    out = data.copy()
    short = special[kind == 2]
    out[short] = _SHORT[data[short]]
    hex_at = special[is_hex]
    out[hex_at] = _HEX[data[hex_at] & 0x0F]
    # What goes in front of each special byte: "\" (1 byte) or "\u00X" (5 bytes).
    extra = np.where(is_hex, 5, 1)
    inserted = np.full(int(extra.sum()), 0x5C, dtype=np.uint8)
    if hex_at.size:
        first = (np.cumsum(extra) - extra)[is_hex]
        inserted[first + 1] = ord("u")
        inserted[first + 2] = inserted[first + 3] = ord("0")
        inserted[first + 4] = _HEX[data[hex_at] >> 4]
    escaped = np.insert(out, np.repeat(special, extra), inserted)
    row = np.searchsorted(offsets, special, side="right") - 1
    grown = np.bincount(row, weights=extra, minlength=len(values)).astype(np.int64)
    new_offsets = offsets.copy()
    new_offsets[1:] += np.cumsum(grown)
    return pa.Array.from_buffers(
        BINARY, len(values), [None, pa.py_buffer(new_offsets), pa.py_buffer(escaped)]
    )
