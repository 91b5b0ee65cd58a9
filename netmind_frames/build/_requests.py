"""Frame -> request lines: templates, messages, custom_ids and shards.

The hot path (a ``str.format`` template over 1M rows) never loops over rows in Python: every
line is ``head + custom_id + mid + content + tail``, where the constant pieces come from one
``orjson.dumps`` of a line with sentinels in place of the variable values, and the variable
values are JSON-escaped with NumPy on the raw Arrow UTF-8 buffers, then concatenated with
``pyarrow.compute.binary_join_element_wise``. The bytes of a shard are the data buffers of
those Arrow arrays, joined once.

This module holds the plan and its builders; the parts live in :mod:`._content` (the
variable values: templates, text columns, messages), :mod:`._custom_ids` (each row's id and
the way back), :mod:`._lines` (line bytes and shards) and :mod:`._frame` (column and row
lookups shared by all of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .._errors import InputError, RowError
from ._content import Raw, Source, content_source, parse_template, text_values
from ._custom_ids import (
    as_string_array,
    check_custom_ids,
    default_positions,
    position_ids,
    user_ids,
)
from ._escape import BINARY, buffers
from ._frame import get_column, row_label
from ._lines import CONTENT_SENTINEL, iter_line_chunks, line_pieces, split_into_shards
from ._rowparams import model_groups, params_fragments, whole_numbers

__all__ = [
    "CHAT_ENDPOINT",
    "EMBEDDINGS_ENDPOINT",
    "RequestPlan",
    "Shard",
    "build_embedding_plan",
    "build_plan",
    "check_custom_ids",
    "fingerprint_of",
]

CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"

#: Rows turned into lines at a time: bounds the extra memory of the Arrow intermediates.
CHUNK_ROWS = 128 * 1024


@dataclass(frozen=True)
class Shard:
    """One input file: consecutive rows, one model, within the provider's limits."""

    model: str
    data: bytes
    """The JSONL bytes to upload; every line ends with ``b"\\n"``."""
    positions: np.ndarray = field(repr=False)
    """int64 row positions (0-based in the frame) of the lines, in line order."""
    endpoint: str = CHAT_ENDPOINT

    @property
    def n_requests(self) -> int:
        """The number of request lines in :attr:`data`."""
        return len(self.positions)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of ``endpoint + "\\n" + data``: the exactly-once key of the shard.

        Computed on first access: sha256 runs at ~370 MB/s on the reference machine (no SHA
        extensions), slower than building the bytes, and a dry run (``to_jsonl``) never needs
        it. :func:`fingerprint_of` is the same, for hashing many shards in threads.
        """
        return fingerprint_of(self)


def fingerprint_of(shard: Shard) -> str:
    """:attr:`Shard.fingerprint`, computed afresh; safe to call from several threads at once
    (hashlib releases the GIL while it hashes, so shards hash side by side on several cores)."""
    digest = hashlib.sha256(shard.endpoint.encode() + b"\n")
    digest.update(shard.data)
    return digest.hexdigest()


@dataclass(frozen=True)
class RequestPlan:
    """Every request of a frame, split into shards, and the way back from ids to rows."""

    endpoint: str
    n_rows: int
    shards: tuple[Shard, ...]
    custom_ids: pd.Index | None = field(default=None, repr=False, compare=False)
    """The user's ids in row order (``custom_id_column``), or None for position ids."""
    first_position: int = 0
    """Position ids start here: row ``i`` of the frame has id ``str(first_position + i)``
    (a chunk of a larger input keeps the ids of its rows in the whole input)."""

    def positions_of(self, custom_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Map custom_id strings back to int64 row positions; -1 for an id not in this plan.

        Vectorised: position ids are cast to integers by Arrow (and checked to be the
        canonical spelling, so ``"007"`` never lands on row 7); user ids go through a
        pandas hash index.
        """
        ids = as_string_array(custom_ids)
        if self.custom_ids is not None:
            found = self.custom_ids.get_indexer(pd.Index(ids.to_numpy(zero_copy_only=False)))
            return np.asarray(found, dtype=np.int64)
        return default_positions(ids, self.n_rows, self.first_position)


def build_plan(
    frame: pd.DataFrame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    max_requests: int = 50_000,
    max_bytes: int = 100 * 1024 * 1024,
    params: Mapping[str, Any] | None = None,
    first_position: int = 0,
    model_column: str | None = None,
    params_column: str | None = None,
) -> RequestPlan:
    """Turn every row of ``frame`` into one chat-completion request line, split into shards.

    Parameters
    ----------
    frame:
        The rows; never modified.
    prompt:
        A ``str.format`` template over column names (``{{``/``}}`` are literal braces).
        Exactly one of ``prompt``, ``prompt_column`` and ``messages_column`` is required.
    model:
        The model of every request; with ``model_column``, the model of rows whose cell is
        null (without it, a null cell is an error). One of the two is required.
    prompt_column:
        A column of non-null strings, each the user message of its row.
    messages_column:
        A column of lists of ``{"role", "content", ...}`` dicts, validated (roles, content
        types, ``tool_calls``) and sent as they are.
    system:
        A system message put first in every request.
    custom_id_column:
        A column of unique ids (strings or integers, at most 64 characters of
        ``[A-Za-z0-9_.:-]``); by default a row's id is its position, ``"0"``, ``"1"``, ...
    max_requests, max_bytes:
        The provider's limits per input file; rows are split into consecutive shards.
    params:
        Chat-completion parameters (``max_tokens``, ``temperature``, ...) for every body.
    first_position:
        The position of the frame's first row in a larger input (a chunk of a file): default
        ids are ``str(first_position + i)``, so they stay unique across the chunks. Shard
        positions (and error messages) stay 0-based within ``frame``.
    model_column:
        A column naming each row's model. Rows are grouped by model (in order of first
        appearance) and each model gets its own shards (one model per input file): a shard's
        rows are consecutive among that model's rows, and ``Shard.positions`` says which.
    params_column:
        A column of dicts (or nulls) merged into each row's body after ``params`` (a row's key
        wins). They may not set ``model`` or ``messages``; None values are left out.

    Returns
    -------
    RequestPlan
        Deterministic: the same frame and arguments give the same bytes and fingerprints.

    Raises
    ------
    InputError
        Bad arguments, an empty frame, a template field that is not a plain column name.
    ColumnError
        A named column is missing (the message lists the available columns).
    RowError
        A null or non-string prompt, a bad or duplicated id, a line over ``max_bytes``.

    Example
    -------
    >>> plan = build_plan(pd.DataFrame({"t": ["hi"]}), "Say {t}", model="m")
    >>> plan.shards[0].data[:30]
    b'{"custom_id":"0","method":"POS'
    """
    params = _keyword_params(params)
    _check_arguments(prompt, prompt_column, messages_column, max_requests, max_bytes, params)
    _check_frame(frame, first_position)
    if system is not None and not isinstance(system, str):
        raise InputError(f"system must be a str, got {type(system).__name__}")
    ids, custom_ids = position_ids(len(frame), first_position), None
    if custom_id_column is not None:
        ids, custom_ids = user_ids(frame, custom_id_column)
    source = content_source(frame, prompt, prompt_column, messages_column, system)
    messages: Any = CONTENT_SENTINEL
    if not source.is_messages:
        messages = [{"role": "user", "content": CONTENT_SENTINEL}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
    return _plan(
        frame,
        CHAT_ENDPOINT,
        ids,
        custom_ids,
        source,
        {"messages": messages},
        _Settings(model, model_column, params, params_column, frozenset({"model", "messages"})),
        max_requests,
        max_bytes,
        first_position,
    )


def build_embedding_plan(
    frame: pd.DataFrame,
    column: str,
    *,
    model: str | None = None,
    model_column: str | None = None,
    custom_id_column: str | None = None,
    max_requests: int = 50_000,
    max_bytes: int = 100 * 1024 * 1024,
    params: Mapping[str, Any] | None = None,
    params_column: str | None = None,
    first_position: int = 0,
) -> RequestPlan:
    """Turn every row's text in ``column`` into one ``/v1/embeddings`` request line.

    Each line is ``{"custom_id", "method": "POST", "url": "/v1/embeddings", "body":
    {"model", "input": <text>, **params}}``. The text must be a non-empty string. The other
    arguments work as in :func:`build_plan` (``params`` such as ``dimensions`` or
    ``encoding_format``; ``params_column`` may not set ``model`` or ``input``).

    Example
    -------
    >>> plan = build_embedding_plan(pd.DataFrame({"t": ["hi"]}), "t", model="e")
    >>> plan.shards[0].data
    b'{"custom_id":"0","method":"POST","url":"/v1/embeddings","body":{"model":"e","input":"hi"}}\\n'
    """
    params = _keyword_params(params)
    _check_limits(max_requests, max_bytes)
    _check_reserved(params, frozenset({"model", "input"}), "column=")
    if not isinstance(column, str):
        raise InputError(f"column must be a column name (str), got {type(column).__name__}")
    _check_frame(frame, first_position)
    ids, custom_ids = position_ids(len(frame), first_position), None
    if custom_id_column is not None:
        ids, custom_ids = user_ids(frame, custom_id_column)
    text = text_values(frame, column, strict=True)
    empty = np.flatnonzero(np.diff(buffers(text)[0]) == 0)
    if empty.size:
        position = int(empty[0])
        raise RowError(
            f"{row_label(frame, position)}: column {column!r} is an empty string "
            f"({empty.size} empty row(s) in all); embedding inputs must be non-empty",
            position=position,
        )
    return _plan(
        frame,
        EMBEDDINGS_ENDPOINT,
        ids,
        custom_ids,
        Source((text,), is_messages=False),
        {"input": CONTENT_SENTINEL},
        _Settings(model, model_column, params, params_column, frozenset({"model", "input"})),
        max_requests,
        max_bytes,
        first_position,
    )


def columns_used(
    prompt: str | None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
) -> list[str]:
    """The input columns a plan reads, in first-use order (a streaming reader loads only these).

    Raises ``InputError`` for a template field that is not a plain column name.
    """
    names: list[str] = []
    if prompt is not None:
        names += [name for _, name in parse_template(prompt) if name is not None]
    given = (prompt_column, messages_column, custom_id_column, model_column, params_column)
    names += [n for n in given if n is not None]
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class _Settings:
    """What the body holds besides the content: the model(s) and the parameters."""

    model: str | None
    model_column: str | None
    params: dict[str, Any]
    params_column: str | None
    reserved: frozenset[str]


def _plan(
    frame: pd.DataFrame,
    endpoint: str,
    ids: pa.Array,
    custom_ids: pd.Index | None,
    source: Source,
    content: dict[str, Any],
    settings: _Settings,
    max_requests: int,
    max_bytes: int,
    first_position: int,
) -> RequestPlan:
    """Group rows by model, build each group's lines and cut them into shards."""

    def label(position: int) -> str:
        return row_label(frame, position)

    models = None
    if settings.model_column is not None:
        models = get_column(frame, settings.model_column, "model")
    groups = model_groups(models, settings.model, label, settings.model_column)
    fragments = None
    if settings.params_column is not None:
        column = get_column(frame, settings.params_column, "params")
        fragments = params_fragments(
            column, settings.params, settings.reserved, label, settings.params_column
        )
    shards: list[Shard] = []
    for model, rows in groups:
        params = {} if fragments is not None else settings.params
        head, mid, tail = line_pieces(endpoint, {"model": model, **content, **params}, source)
        pieces: list[bytes | pa.Array | Raw] = [
            head,
            Raw(ids.view(BINARY)),
            mid,
            *source.parts(),
            tail,
        ]
        if fragments is not None:  # the row's params go just before the body's closing brace
            if not tail.endswith(b"}}\n"):
                raise AssertionError("a request line must end with its body")
            pieces[-1:] = [tail[:-3], Raw(fragments), tail[-3:]]
        if rows is not None:
            pieces = [_take(piece, rows) for piece in pieces]
        lines = iter_line_chunks(frame, pieces, rows, max_bytes, CHUNK_ROWS)
        shards += [
            Shard(model, data, positions, endpoint)
            for data, positions in split_into_shards(lines, max_requests, max_bytes, rows)
        ]
    return RequestPlan(
        endpoint, len(frame), tuple(shards), custom_ids=custom_ids, first_position=first_position
    )


def _take(piece: bytes | pa.Array | Raw, rows: np.ndarray) -> bytes | pa.Array | Raw:
    if isinstance(piece, bytes):
        return piece
    if isinstance(piece, Raw):
        return Raw(piece.values.take(pa.array(rows)))
    return piece.take(pa.array(rows))


# -- arguments --------------------------------------------------------------------------------


def _check_arguments(
    prompt: str | None,
    prompt_column: str | None,
    messages_column: str | None,
    max_requests: int,
    max_bytes: int,
    params: Mapping[str, Any],
) -> None:
    given = [n for n, v in [("prompt", prompt), ("prompt_column", prompt_column),
                            ("messages_column", messages_column)] if v is not None]  # fmt: skip
    if len(given) != 1:
        raise InputError(
            "give exactly one of prompt=, prompt_column= and messages_column= "
            f"(got {', '.join(given) or 'none'})"
        )
    _check_limits(max_requests, max_bytes)
    _check_reserved(
        params, frozenset({"model", "messages"}), "prompt=/prompt_column=/messages_column="
    )


def _keyword_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job-wide parameters, integer-only ones as ints (``max_tokens=2.0`` -> 2)."""
    try:
        return whole_numbers(params or {})
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _check_limits(max_requests: int, max_bytes: int) -> None:
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise InputError(f"max_requests must be a positive integer, got {max_requests!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InputError(f"max_bytes must be a positive integer, got {max_bytes!r}")


def _check_reserved(params: Mapping[str, Any], reserved: frozenset[str], content: str) -> None:
    clash = sorted(reserved & set(params))
    if clash:
        raise InputError(
            f"parameter {clash[0]!r} cannot be passed as a request parameter: "
            f"use model= (or model_column=) and {content}"
        )


def _check_frame(frame: pd.DataFrame, first_position: int) -> None:
    if len(frame) == 0:
        raise InputError("the frame is empty: there is nothing to send")
    if (
        isinstance(first_position, bool)
        or not isinstance(first_position, int)
        or first_position < 0
    ):
        raise InputError(f"first_position must be an integer >= 0, got {first_position!r}")
