"""Frame -> request lines: templates, messages, custom_ids and shards.

The hot path (a ``str.format`` template over 1M rows) never loops over rows in Python: every
line is ``head + custom_id + mid + content + tail``, where the constant pieces come from one
``orjson.dumps`` of a line with sentinels in place of the variable values, and the variable
values are JSON-escaped with NumPy on the raw Arrow UTF-8 buffers, then concatenated with
``pyarrow.compute.binary_join_element_wise``. The bytes of a shard are the data buffers of
those Arrow arrays, joined once.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._errors import ColumnError, InputError, RowError
from ._escape import BINARY, buffers, escape_constant, json_escape
from ._rowparams import model_groups, params_fragments, plain

__all__ = [
    "CHAT_ENDPOINT",
    "EMBEDDINGS_ENDPOINT",
    "RequestPlan",
    "Shard",
    "build_embedding_plan",
    "build_plan",
]

CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"

#: Rows turned into lines at a time: bounds the extra memory of the Arrow intermediates.
CHUNK_ROWS = 128 * 1024

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


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

        Computed on first access: sha256 runs at ~240 MB/s on the reference machine, slower
        than building the bytes, and a dry run (``to_jsonl``) never needs it.
        """
        digest = hashlib.sha256(self.endpoint.encode() + b"\n")
        digest.update(self.data)
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
        ids = _as_string_array(custom_ids)
        if self.custom_ids is not None:
            found = self.custom_ids.get_indexer(pd.Index(ids.to_numpy(zero_copy_only=False)))
            return np.asarray(found, dtype=np.int64)
        return _default_positions(ids, self.n_rows, self.first_position)


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
    params = dict(params or {})
    _check_arguments(prompt, prompt_column, messages_column, max_requests, max_bytes, params)
    _check_frame(frame, first_position)
    if system is not None and not isinstance(system, str):
        raise InputError(f"system must be a str, got {type(system).__name__}")
    ids, user_ids = _position_ids(len(frame), first_position), None
    if custom_id_column is not None:
        ids, user_ids = _user_ids(frame, custom_id_column)
    source = _content_source(frame, prompt, prompt_column, messages_column, system)
    messages: Any = _CONTENT_SENTINEL
    if not source.is_messages:
        messages = [{"role": "user", "content": _CONTENT_SENTINEL}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
    return _plan(
        frame,
        CHAT_ENDPOINT,
        ids,
        user_ids,
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
    params = dict(params or {})
    _check_limits(max_requests, max_bytes)
    _check_reserved(params, frozenset({"model", "input"}), "column=")
    if not isinstance(column, str):
        raise InputError(f"column must be a column name (str), got {type(column).__name__}")
    _check_frame(frame, first_position)
    ids, user_ids = _position_ids(len(frame), first_position), None
    if custom_id_column is not None:
        ids, user_ids = _user_ids(frame, custom_id_column)
    text = _text_values(frame, column, strict=True)
    empty = np.flatnonzero(np.diff(buffers(text)[0]) == 0)
    if empty.size:
        position = int(empty[0])
        raise RowError(
            f"{_row_label(frame, position)}: column {column!r} is an empty string "
            f"({empty.size} empty row(s) in all); embedding inputs must be non-empty",
            position=position,
        )
    return _plan(
        frame,
        EMBEDDINGS_ENDPOINT,
        ids,
        user_ids,
        _Source((text,), is_messages=False),
        {"input": _CONTENT_SENTINEL},
        _Settings(model, model_column, params, params_column, frozenset({"model", "input"})),
        max_requests,
        max_bytes,
        first_position,
    )


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
    user_ids: pd.Index | None,
    source: _Source,
    content: dict[str, Any],
    settings: _Settings,
    max_requests: int,
    max_bytes: int,
    first_position: int,
) -> RequestPlan:
    """Group rows by model, build each group's lines and cut them into shards."""

    def label(position: int) -> str:
        return _row_label(frame, position)

    models = None
    if settings.model_column is not None:
        models = _column(frame, settings.model_column, "model")
    groups = model_groups(models, settings.model, label, settings.model_column)
    fragments = None
    if settings.params_column is not None:
        column = _column(frame, settings.params_column, "params")
        fragments = params_fragments(
            column, settings.params, settings.reserved, label, settings.params_column
        )
    shards: list[Shard] = []
    for model, rows in groups:
        params = {} if fragments is not None else settings.params
        head, mid, tail = _line_pieces(endpoint, {"model": model, **content, **params}, source)
        pieces: list[bytes | pa.Array | _Raw] = [
            head,
            _Raw(ids.view(BINARY)),
            mid,
            *source.parts(),
            tail,
        ]
        if fragments is not None:  # the row's params go just before the body's closing brace
            if not tail.endswith(b"}}\n"):
                raise AssertionError("a request line must end with its body")
            pieces[-1:] = [tail[:-3], _Raw(fragments), tail[-3:]]
        if rows is not None:
            pieces = [_take(piece, rows) for piece in pieces]
        lines = _iter_line_chunks(frame, pieces, rows, max_bytes)
        shards += _split_into_shards(lines, model, max_requests, max_bytes, rows, endpoint)
    return RequestPlan(
        endpoint, len(frame), tuple(shards), custom_ids=user_ids, first_position=first_position
    )


def _take(piece: bytes | pa.Array | _Raw, rows: np.ndarray) -> bytes | pa.Array | _Raw:
    if isinstance(piece, bytes):
        return piece
    if isinstance(piece, _Raw):
        return _Raw(piece.values.take(pa.array(rows)))
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


def _row_label(frame: pd.DataFrame, position: int) -> str:
    label = frame.index[position]
    if isinstance(label, np.generic):  # show 3, not np.int64(3)
        label = label.item()
    return f"row {position} (index {label!r})"


def _column(frame: pd.DataFrame, name: str, role: str) -> pd.Series:
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


# -- the variable values ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where each row's content comes from.

    ``pieces`` alternates literal, already JSON-escaped bytes and whole-frame Arrow arrays:
    raw UTF-8 text for a prompt (escaped chunk by chunk, to bound memory) or JSON for
    messages (exactly one array piece, not escaped).
    """

    pieces: tuple[bytes | pa.Array, ...]
    is_messages: bool

    def parts(self) -> list[bytes | pa.Array | _Raw]:
        """The pieces, messages JSON marked raw (prompt text is escaped as lines are built)."""
        return [_Raw(p) if self.is_messages and isinstance(p, pa.Array) else p
                for p in self.pieces]  # fmt: skip


@dataclass(frozen=True)
class _Raw:
    """An array of bytes that go into lines as they are (ids, JSON), not JSON-escaped."""

    values: pa.Array


def _content_source(
    frame: pd.DataFrame,
    prompt: str | None,
    prompt_column: str | None,
    messages_column: str | None,
    system: str | None,
) -> _Source:
    if messages_column is not None:
        return _Source((_messages_json(frame, messages_column, system),), is_messages=True)
    if prompt_column is not None:
        return _Source((_text_values(frame, prompt_column, strict=True),), is_messages=False)
    assert prompt is not None
    pieces: list[bytes | pa.Array] = []
    arrays: dict[str, pa.Array] = {}
    for literal, name in _parse_template(prompt):
        if literal:
            pieces.append(escape_constant(literal, "prompt template"))
        if name is not None:
            if name not in arrays:
                arrays[name] = _text_values(frame, name, strict=False)
            pieces.append(arrays[name])
    return _Source(tuple(pieces), is_messages=False)


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
        names += [name for _, name in _parse_template(prompt) if name is not None]
    given = (prompt_column, messages_column, custom_id_column, model_column, params_column)
    names += [n for n in given if n is not None]
    return list(dict.fromkeys(names))


def _parse_template(prompt: str) -> list[tuple[str, str | None]]:
    """Split a template into (literal, column or None) pairs; only plain names are allowed."""
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a str template, got {type(prompt).__name__}")
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise InputError(f"prompt is not a valid str.format template: {exc}") from None
    out: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (name == "" or spec or conversion or re.search(r"[.\[]", name)):
            shown = "{" + name + ("!" + conversion if conversion else "")
            shown += (":" + spec if spec else "") + "}"
            raise InputError(
                f"prompt field {shown} is not supported: fields must be plain column names "
                "such as {text}, without positions, attributes, indexing, conversions or "
                "format specs (rename the column, or format it into a new column first)"
            )
        out.append((literal, name))
    return out


def _text_values(frame: pd.DataFrame, name: str, *, strict: bool) -> pa.Array:
    """A column as UTF-8 text (large_binary), after checking every row.

    ``strict`` (``prompt_column``): cells must be strings. Otherwise (template fields) any
    non-null value is formatted with ``str()``, as ``str.format`` would.
    """
    column = _column(frame, name, "prompt" if strict else "template")
    nulls = np.flatnonzero(np.asarray(column.isna(), dtype=bool))
    if nulls.size:
        position = int(nulls[0])
        raise RowError(
            f"{_row_label(frame, position)}: column {name!r} is null "
            f"({nulls.size} null row(s) in all); prompts must be non-null",
            position=position,
        )
    if not _is_string_dtype(column):
        if strict:
            _raise_first_non_string(frame, column, name)
        column = column.astype(object).map(str) if column.dtype == object else column.astype(str)
    return _to_arrow_text(frame, column, name)


def _is_string_dtype(column: pd.Series) -> bool:
    if isinstance(column.dtype, pd.StringDtype):
        return True
    if isinstance(column.dtype, pd.ArrowDtype):  # e.g. read_parquet(dtype_backend="pyarrow")
        kind = column.dtype.pyarrow_dtype
        return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))
    return column.dtype == object and pd.api.types.infer_dtype(column, skipna=False) == "string"


def _raise_first_non_string(frame: pd.DataFrame, column: pd.Series, name: str) -> None:
    for position, value in enumerate(column.array):
        if not isinstance(value, str):
            raise RowError(
                f"{_row_label(frame, position)}: column {name!r} holds a "
                f"{type(value).__name__} ({value!r}), not a string; prompts must be strings",
                position=position,
            )


def _to_arrow_text(frame: pd.DataFrame, column: pd.Series, name: str) -> pa.Array:
    """One large_binary array of UTF-8 bytes (zero-copy for Arrow-backed string columns)."""
    try:
        values = pa.array(column, type=pa.large_string(), from_pandas=True)
    except UnicodeEncodeError:
        for position, value in enumerate(column.array):
            try:
                str(value).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RowError(
                    f"{_row_label(frame, position)}: column {name!r} is not encodable as "
                    f"UTF-8 ({exc.reason} at character {exc.start})",
                    position=position,
                ) from None
        raise
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.view(BINARY)


def _messages_json(frame: pd.DataFrame, name: str, system: str | None) -> pa.Array:
    """Each row's message list as compact JSON bytes, validated (per row: not a hot path)."""
    column = _column(frame, name, "messages")
    prefix = [{"role": "system", "content": system}] if system is not None else []
    out: list[bytes] = []
    for position, cell in enumerate(column.array):
        messages = _check_messages(frame, position, name, cell)
        try:
            out.append(orjson.dumps(prefix + messages, option=orjson.OPT_SERIALIZE_NUMPY))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise RowError(
                f"{_row_label(frame, position)}: messages in column {name!r} cannot be "
                f"encoded as JSON: {exc}",
                position=position,
            ) from None
    return pa.array(out, type=BINARY)


def _check_messages(frame: pd.DataFrame, position: int, name: str, cell: Any) -> list[Any]:
    """A row's messages as plain lists and dicts, after checking them one by one.

    Every message is a dict with a known ``role``. ``content`` is a string or a non-empty
    list of parts (dicts with a string ``type``; a ``text`` part has a string ``text``); an
    ``assistant`` message may have null or no content when it carries ``tool_calls`` (or a
    ``function_call``); a ``tool`` message needs a string ``tool_call_id``; ``name`` is a
    string; ``tool_calls`` is a list of dicts with an ``id``, a ``type`` and a ``function``.
    """

    def bad(why: str) -> RowError:
        return RowError(f"{_row_label(frame, position)}: column {name!r}: {why}", position)

    if not isinstance(cell, (list, tuple, np.ndarray)) or len(cell) == 0:
        raise bad(f"expected a non-empty list of messages, got {type(cell).__name__}")
    messages = []
    for i, message in enumerate(plain(cell)):
        if not isinstance(message, Mapping):
            raise bad(f"message {i} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if role not in _ROLES:
            raise bad(f"message {i} has role {role!r}; expected one of {sorted(_ROLES)}")
        why = _message_problem(message, role)
        if why is not None:
            raise bad(f"message {i} ({role}) {why}")
        messages.append(dict(message))
    return messages


def _message_problem(message: Mapping[str, Any], role: str) -> str | None:
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            return "has tool_calls; only assistant messages may"
        if not isinstance(tool_calls, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("id"), str) and "function" in c
            for c in tool_calls
        ):
            return "tool_calls must be a list of dicts with an 'id' and a 'function'"
    if not isinstance(message.get("name", ""), str):
        return "name must be a string"
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        return "needs a string tool_call_id"
    if content is None:
        if role == "assistant" and (tool_calls or message.get("function_call")):
            return None
        return "has no content (only an assistant message with tool_calls may)"
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"content is a {type(content).__name__}, not a str or list of parts"
    if not content:
        return "content is an empty list of parts"
    for j, part in enumerate(content):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            return f"content part {j} is not a dict with a string 'type'"
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return f"content part {j} is a text part without a string 'text'"
    return None


# -- custom ids -------------------------------------------------------------------------------


def _position_ids(n_rows: int, first: int = 0) -> pa.Array:
    return pc.cast(pa.array(np.arange(first, first + n_rows, dtype=np.int64)), pa.large_string())


def _user_ids(frame: pd.DataFrame, name: str) -> tuple[pa.Array, pd.Index]:
    """Validated user ids (large_string, and as an Index): non-null, unique, short, plain."""
    column = _column(frame, name, "custom_id")
    nulls = np.flatnonzero(np.asarray(column.isna(), dtype=bool))
    if nulls.size:
        position = int(nulls[0])
        raise RowError(f"{_row_label(frame, position)}: custom_id is null", position=position)
    if pd.api.types.is_integer_dtype(column.dtype):
        column = column.astype(str)
    elif not _is_string_dtype(column):
        column = pd.Series(_ids_as_str(frame, name, column), dtype=object)
    ids = pa.array(column, type=pa.large_string(), from_pandas=True)
    bad = np.flatnonzero(~np.asarray(pc.match_substring_regex(ids, _ID_PATTERN), dtype=bool))
    if bad.size:
        position = int(bad[0])
        raise RowError(
            f"{_row_label(frame, position)}: custom_id {ids[position].as_py()!r} must be 1 to "
            "64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
            position=position,
        )
    index = pd.Index(ids.to_numpy(zero_copy_only=False))
    _check_unique(frame, index)
    return ids, index


def check_custom_ids(frame: pd.DataFrame, name: str) -> None:
    """Check a ``custom_id_column`` over the whole frame (non-null, unique, well-formed)."""
    _user_ids(frame, name)


def _ids_as_str(frame: pd.DataFrame, name: str, column: pd.Series) -> list[str]:
    """Ids of a mixed (object) column: strings stay, integers become strings, else an error."""
    out = []
    for position, value in enumerate(column.array):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise RowError(
                f"{_row_label(frame, position)}: custom_id in column {name!r} is a "
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
    shown = ", ".join(_row_label(frame, int(p)) for p in rows[:5])
    raise RowError(
        f"custom_id {value!r} is used by {len(rows)} rows: {shown}; ids must be unique "
        f"({len(index) - len(index.unique())} duplicate(s) in all)",
        position=int(rows[1]),
    )


def _default_positions(ids: pa.Array, n_rows: int, first: int = 0) -> np.ndarray:
    """Position ids -> int64 positions (``id - first``); anything not spelled exactly
    ``str(position)``, or outside ``first .. first + n_rows``, -> -1."""
    valid = pc.and_kleene(
        pc.is_valid(ids), pc.match_substring_regex(ids, r"^(0|[1-9][0-9]{0,17})$")
    )
    numbers = pc.cast(pc.if_else(valid, ids, "-1"), pa.int64())
    positions = np.array(numbers.to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown = (positions < first) | (positions >= first + n_rows)
    positions -= first
    positions[unknown] = -1
    return positions


def _as_string_array(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.large_string())
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = pc.cast(ids, pa.large_string())
    return ids


# -- lines and shards -------------------------------------------------------------------------

_ID_SENTINEL = "\x00netmind-frames-custom-id\x00"
_CONTENT_SENTINEL = "\x00netmind-frames-content\x00"


def _line_pieces(
    endpoint: str, body: dict[str, Any], source: _Source
) -> tuple[bytes, bytes, bytes]:
    """The constant bytes around a line's id and content: ``head ID mid CONTENT tail``.

    ``body`` holds ``_CONTENT_SENTINEL`` where the content goes. For text the content goes
    inside a JSON string (the quotes are in ``mid``/``tail``); for messages it is the whole
    JSON array.
    """
    line = {"custom_id": _ID_SENTINEL, "method": "POST", "url": endpoint, "body": body}
    try:
        raw = orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InputError(f"model, system or params cannot be encoded as JSON: {exc}") from None
    head, rest = _split_once(raw, orjson.dumps(_ID_SENTINEL))
    mid, tail = _split_once(rest, orjson.dumps(_CONTENT_SENTINEL))
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


def _iter_line_chunks(
    frame: pd.DataFrame,
    pieces: list[bytes | pa.Array | _Raw],
    rows: np.ndarray | None,
    max_bytes: int,
) -> Iterator[_LineChunk]:
    """Lines of ``CHUNK_ROWS`` rows at a time: arrays are JSON-escaped, ``_Raw`` ones not.

    ``rows`` maps a line to its frame position (None: line ``i`` is row ``i``).
    """
    merged = _merge_constants(pieces)
    n_lines = next(len(p.values if isinstance(p, _Raw) else p) for p in merged
                   if not isinstance(p, bytes))  # fmt: skip
    separator = pa.scalar(b"", BINARY)
    for start in range(0, n_lines, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n_lines)
        args: list[pa.Array | pa.Scalar] = []
        for piece in merged:
            if isinstance(piece, bytes):
                args.append(pa.scalar(piece, BINARY))
            elif isinstance(piece, _Raw):
                args.append(piece.values.slice(start, stop - start))
            else:
                args.extend(json_escape(piece.slice(start, stop - start)))
        # "skip": a row's text is the non-null one of the two arrays _json_escape returns.
        lines = pc.binary_join_element_wise(*args, separator, null_handling="skip")
        offsets, data = buffers(lines)
        _check_line_sizes(frame, start, np.diff(offsets), max_bytes, rows)
        yield _LineChunk(start, data, offsets)


def _merge_constants(pieces: list[bytes | pa.Array | _Raw]) -> list[bytes | pa.Array | _Raw]:
    """Join neighbouring constant pieces: fewer arguments make the Arrow join faster."""
    merged: list[bytes | pa.Array | _Raw] = []
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
            f"{_row_label(frame, position)}: its request line is {int(sizes[over[0]]):,} bytes, "
            f"over the {limit:,}-byte limit of one input file",
            position=position,
        )


def _split_into_shards(
    chunks: Iterator[_LineChunk],
    model: str,
    max_requests: int,
    max_bytes: int,
    rows: np.ndarray | None = None,
    endpoint: str = CHAT_ENDPOINT,
) -> list[Shard]:
    """Greedy consecutive shards; each line was checked to fit ``max_bytes`` on its own.

    Line ``i`` is frame row ``rows[i]`` (``i`` when ``rows`` is None).
    """
    shards: list[Shard] = []
    parts: list[memoryview] = []
    first_row = n_lines = n_bytes = 0

    def close(next_row: int) -> None:
        nonlocal parts, first_row, n_lines, n_bytes
        if n_lines:
            positions = np.arange(first_row, first_row + n_lines, dtype=np.int64)
            if rows is not None:
                positions = rows[positions]
            shards.append(Shard(model, b"".join(parts), positions, endpoint))
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
