"""Lines and shards: the JSONL bytes of request lines, cut into input files.

Every line is ``head + custom_id + mid + content + tail``: the constant pieces come from one
``orjson.dumps`` of a line with sentinels in place of the variable values; the variable
values are joined in with ``pyarrow.compute.binary_join_element_wise``, a chunk of rows at a
time, and the lines are cut greedily into consecutive shards within the provider's limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError, RowError
from ._content import Raw, Source
from ._escape import BINARY, buffers, json_escape
from ._frame import row_label

_ID_SENTINEL = "\x00netmind-frames-custom-id\x00"
CONTENT_SENTINEL = "\x00netmind-frames-content\x00"


def line_pieces(endpoint: str, body: dict[str, Any], source: Source) -> tuple[bytes, bytes, bytes]:
    """The constant bytes around a line's id and content: ``head ID mid CONTENT tail``.

    ``body`` holds ``CONTENT_SENTINEL`` where the content goes. For text the content goes
    inside a JSON string (the quotes are in ``mid``/``tail``); for messages it is the whole
    JSON array.
    """
    line = {"custom_id": _ID_SENTINEL, "method": "POST", "url": endpoint, "body": body}
    try:
        raw = orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InputError(f"model, system or params cannot be encoded as JSON: {exc}") from None
    head, rest = _split_once(raw, orjson.dumps(_ID_SENTINEL))
    mid, tail = _split_once(rest, orjson.dumps(CONTENT_SENTINEL))
    if source.is_messages:
        return head + b'"', b'"' + mid, tail + b"\n"
    return head + b'"', b'"' + mid + b'"', b'"' + tail + b"\n"


def _split_once(raw: bytes, sentinel: bytes) -> tuple[bytes, bytes]:
    parts = raw.split(sentinel)
    if len(parts) != 2:
        raise InputError("params must not contain netmind_frames' internal sentinel strings")
    return parts[0], parts[1]


@dataclass(frozen=True)
class _LineChunk:
    """The lines of rows ``start ..``: their bytes and ``len(rows) + 1`` offsets into them."""

    start: int
    data: np.ndarray
    offsets: np.ndarray


def iter_line_chunks(
    frame: pd.DataFrame,
    pieces: list[bytes | pa.Array | Raw],
    rows: np.ndarray | None,
    max_bytes: int,
    chunk_rows: int,
) -> Iterator[_LineChunk]:
    """Lines of ``chunk_rows`` rows at a time: arrays are JSON-escaped, ``Raw`` ones not.

    ``rows`` maps a line to its frame position (None: line ``i`` is row ``i``).
    """
    merged = _merge_constants(pieces)
    n_lines = next(len(p.values if isinstance(p, Raw) else p) for p in merged
                   if not isinstance(p, bytes))  # fmt: skip
    separator = pa.scalar(b"", BINARY)
    for start in range(0, n_lines, chunk_rows):
        stop = min(start + chunk_rows, n_lines)
        args: list[pa.Array | pa.Scalar] = []
        for piece in merged:
            if isinstance(piece, bytes):
                args.append(pa.scalar(piece, BINARY))
            elif isinstance(piece, Raw):
                args.append(piece.values.slice(start, stop - start))
            else:
                args.extend(json_escape(piece.slice(start, stop - start)))
        # "skip": a row's text is the non-null one of the two arrays _json_escape returns.
        lines = pc.binary_join_element_wise(*args, separator, null_handling="skip")
        offsets, data = buffers(lines)
        _check_line_sizes(frame, start, np.diff(offsets), max_bytes, rows)
        yield _LineChunk(start, data, offsets)


def _merge_constants(pieces: list[bytes | pa.Array | Raw]) -> list[bytes | pa.Array | Raw]:
    """Join neighbouring constant pieces: fewer arguments make the Arrow join faster."""
    merged: list[bytes | pa.Array | Raw] = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        elif not (isinstance(piece, bytes) and not piece):
            merged.append(piece)
    return merged


def _check_line_sizes(
    frame: pd.DataFrame, start: int, sizes: np.ndarray, limit: int, rows: np.ndarray | None
) -> None:
    over = np.flatnonzero(sizes > limit)
    if over.size:
        position = start + int(over[0])
        position = position if rows is None else int(rows[position])
        raise RowError(
            f"{row_label(frame, position)}: its request line is {int(sizes[over[0]]):,} bytes, "
            f"over the {limit:,}-byte limit of one input file",
            position=position,
        )


def split_into_shards(
    chunks: Iterator[_LineChunk],
    max_requests: int,
    max_bytes: int,
    rows: np.ndarray | None = None,
) -> list[tuple[bytes, np.ndarray]]:
    """Greedy consecutive shards; each line was checked to fit ``max_bytes`` on its own.

    Each shard is its JSONL bytes and the int64 frame positions of its lines (the caller
    makes a ``Shard`` of them). Line ``i`` is frame row ``rows[i]`` (``i`` when ``rows`` is
    None).
    """
    shards: list[tuple[bytes, np.ndarray]] = []
    parts: list[memoryview] = []
    first_row = n_lines = n_bytes = 0

    def close(next_row: int) -> None:
        nonlocal parts, first_row, n_lines, n_bytes
        if n_lines:
            positions = np.arange(first_row, first_row + n_lines, dtype=np.int64)
            if rows is not None:
                positions = rows[positions]
            shards.append((b"".join(parts), positions))
        parts, first_row, n_lines, n_bytes = [], next_row, 0, 0

    for chunk in chunks:
        offsets, view, i = chunk.offsets, chunk.data.data, 0
        while i < len(offsets) - 1:
            by_bytes = np.searchsorted(offsets, offsets[i] + (max_bytes - n_bytes), "right") - 1
            end = min(int(by_bytes), i + (max_requests - n_lines), len(offsets) - 1)
            if end == i:  # the current shard is full
                close(chunk.start + i)
                continue
            parts.append(view[int(offsets[i]) : int(offsets[end])])
            n_lines += end - i
            n_bytes += int(offsets[end] - offsets[i])
            i = end
    close(0)
    return shards
