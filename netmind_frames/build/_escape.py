"""JSON string escaping of Arrow UTF-8 arrays, vectorised (no per-row Python).

The request builder's hot path: every variable value of a request line goes through
:func:`json_escape`, which scans the raw bytes once with NumPy and rewrites only the rows that
need it, with Arrow's ``replace_substring``.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError

BINARY = pa.large_binary()

#: Each byte JSON forbids raw in a string -> its escape, as orjson writes it (control chars
#: as \b \t \n \f \r or \u00xx, '"' and '\\' behind a backslash). Non-ASCII bytes pass
#: through: JSON text is UTF-8 and U+2028/U+2029 are legal in it.
_ESCAPES = {byte: orjson.dumps(chr(byte))[1:-1] for byte in (*range(0x20), 0x22, 0x5C)}


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


#: Escape every row at once when more than this share of rows needs escaping: the masked
#: pair of arrays saves copying clean rows, which dense text (code, JSON, CSV) hardly has.
_DENSE_SHARE = 0.25


def json_escape(values: pa.Array) -> list[pa.Array]:
    """JSON-escape UTF-8 strings (large_binary) without Python per row.

    Returns one array, or two that the line join concatenates with ``null_handling="skip"``:
    the input with the rows that need escaping masked out (zero-copy: a new validity bitmap),
    and those rows escaped (empty elsewhere). Usual text has few such rows, so the cost is
    one vectorised scan of the bytes plus work proportional to the rows that need escaping,
    and no copy of the clean rows. When many rows need escaping (text dense in quotes,
    backslashes or newlines: code, JSON, CSV) the whole array is escaped at once.
    """
    offsets, data = buffers(values)
    special = _special_bytes(data)
    if special.size == 0:
        return [values]
    present = np.flatnonzero(np.bincount(data[special], minlength=256)).tolist()
    # Row i holds the special bytes special[first[i]:first[i + 1]] (both are sorted).
    first = np.searchsorted(special, offsets, side="left")
    rows = np.flatnonzero(np.diff(first))
    if rows.size > _DENSE_SHARE * len(values):
        return [_escaped(values, present)]
    escaped_offsets, escaped_data = buffers(_escaped(values.take(pa.array(rows)), present))
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


def _escaped(values: pa.Array, present: list[int]) -> pa.Array:
    """``values`` with each of the ``present`` special bytes replaced by its escape.

    One Arrow ``replace_substring`` pass per distinct special byte (usually 1-4: quotes,
    backslashes, newlines, tabs), in C++ over the whole array: several times faster than
    inserting the escapes with NumPy when they are dense. The backslash goes first, so the
    backslashes the other escapes add are not doubled.
    """
    for byte in sorted(present, key=lambda b: b != 0x5C):
        values = pc.replace_substring(values, bytes([byte]), _ESCAPES[byte])
    return values
