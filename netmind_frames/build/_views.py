"""Arrow string views as plain large strings, sharing their bytes when the layout allows.

Polars keeps text as string views (a 16-byte view per row pointing into data buffers); the
request builders read ``large_string`` (one offsets buffer, one data buffer: see
:mod:`._escape`). Arrow's cast gathers the bytes row by row (~70 ms per 300 MB here, bound by
memory bandwidth). But a Polars frame made from Arrow or pandas (``pl.from_arrow``,
``pl.from_pandas``) keeps the large string's bytes as its one data buffer, each row's view
pointing just past the previous row's bytes: then the large string is that buffer plus offsets
computed from the view lengths, and no byte is copied. :func:`large_from_view` checks that
layout exactly, with NumPy over the views, and otherwise casts (short strings stored inside
their views, several buffers, gaps between rows as in Parquet pages, rows out of order after a
filter). Copying runs of rows block by block was tried: no faster than Arrow's cast.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Strings of at most this many bytes live inside their view, not in a data buffer.
_INLINE = 12


def is_view(kind: pa.DataType) -> bool:
    """Whether ``kind`` is ``string_view`` or ``binary_view`` (pyarrow 16+ has these)."""
    return str(kind) in ("string_view", "binary_view")  # pa.types.is_*_view needs pyarrow 16


def large_from_view(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``string_view`` as ``large_string``, ``binary_view`` as ``large_binary``: equal values.

    Per chunk: the bytes are shared when every non-empty row is longer than 12 bytes and the
    rows' bytes follow one another in one data buffer; otherwise Arrow's cast copies them.
    """
    if isinstance(values, pa.ChunkedArray):
        kind = large_type(values.type)
        return pa.chunked_array([large_from_view(c) for c in values.chunks], kind)
    shared = _shared(values)
    if shared is not None:
        return shared
    return pc.cast(values, large_type(values.type))


def large_type(kind: pa.DataType) -> pa.DataType:
    """The plain type of a view type: ``large_string`` for ``string_view``, else
    ``large_binary``."""
    return pa.large_string() if str(kind) == "string_view" else pa.large_binary()


#: Rows of the sample looked at first (at the start, middle and end): a layout that is not
#: back to back shows there at once, before the whole scan.
_SAMPLE = 1024


def _shared(values: pa.Array) -> pa.Array | None:
    """``values`` over the same data buffer, if its rows lie back to back in it; else None."""
    n = len(values)
    validity, views_buffer, *data = values.buffers()
    if n == 0 or views_buffer is None or (values.offset and values.null_count):
        return None  # rare (a slice's validity bits would need shifting): leave it to the cast
    # Each view: int32 length, then (length > 12) a prefix, a buffer index and an offset.
    views = np.frombuffer(views_buffer, np.int32, 4 * n, 16 * values.offset).reshape(n, 4)
    for at in (0, max(0, n // 2 - _SAMPLE // 2), max(0, n - _SAMPLE)):
        if not _back_to_back(views[at : at + _SAMPLE], None):
            return None
    views = views.copy()  # contiguous columns make the passes below several times faster
    lengths = views[:, 0]
    if values.null_count:  # a null row's view is undefined: it contributes no bytes
        lengths[~np.asarray(values.is_valid())] = 0
    else:
        validity = None
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, dtype=np.int64, out=offsets[1:])
    if not _back_to_back(views, offsets):
        return None
    total = int(offsets[-1])
    if not total:
        shared = pa.py_buffer(b"")
    else:
        buffer, first = (int(v) for v in views[int(np.argmax(lengths > 0)), 2:])
        if buffer >= len(data) or first < 0 or first + total > data[buffer].size:
            return None  # not where a valid array's views point: let Arrow decide
        shared = data[buffer].slice(first, total)
    kind = large_type(values.type)
    return pa.Array.from_buffers(
        kind, n, [validity, pa.py_buffer(offsets), shared], values.null_count
    )


def _back_to_back(views: np.ndarray, offsets: np.ndarray | None) -> bool:
    """Whether the rows of ``views`` with bytes hold 13 or more, all in one buffer, each
    starting where the previous one ends (``offsets``: the rows' cumulative lengths; None for
    a sample, whose empty and null rows are skipped)."""
    lengths = views[:, 0]
    if offsets is None:
        kept = lengths > _INLINE
        views, lengths = views[kept], lengths[kept]
        offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
    elif np.any((lengths - 1).view(np.uint32) < _INLINE):  # 1 to 12 bytes: inside the view
        return False
    if not lengths.all():  # empty (or null) rows are inline: compare only the others
        kept = lengths > 0
        views, offsets = views[kept], offsets[:-1][kept]
    else:
        offsets = offsets[:-1]
    if not len(views):
        return True
    buffer, start = views[:, 2], views[:, 3]
    return bool(np.all(start - offsets == int(start[0])) and np.all(buffer == buffer[0]))
