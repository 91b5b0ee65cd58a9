"""Output/error JSONL -> Arrow table -> joined DataFrame.

Each file is read by ``pyarrow.json.read_json`` with an explicit, pruned schema, or by a
tolerant per-line orjson parser when Arrow refuses the file (vLLM's string ``error``, a
truncated line, a numeric ``custom_id``). Lines map to frame rows through
``RequestPlan.positions_of``; each row then points at its success line (answer columns) or
at its error (error columns: of a failed line, or a synthetic one saying why the row has no
line), and one Arrow ``take`` per column builds the result table: no per-row Python on the
fast path.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .._errors import ColumnError, InputError, MissingResultWarning
from ..build._requests import RequestPlan

__all__ = [
    "READ_OPTIONS",
    "RESULT_COLUMNS",
    "LineFormat",
    "ShardOutcome",
    "Status",
    "check_result_columns",
    "collect_lines",
    "collect_results",
    "join_results",
    "mark_invalid_output",
]

RESULT_COLUMNS = (
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error_code",
    "error_message",
    "status",
)
Status = Literal["ok", "failed", "expired", "cancelled"]
_STR = pa.large_string()
_STATUSES = pa.array(["ok", "failed", "expired", "cancelled"], pa.large_string())

_TOKENS = ("prompt_tokens", "completion_tokens")
# Strings are read as large_string, the type of the result columns: no cast copies them.
_ERROR = pa.struct([("code", _STR), ("type", _STR), ("message", _STR)])
_CHOICE = pa.struct([("message", pa.struct([("content", _STR)])), ("finish_reason", _STR)])
_USAGE = pa.struct([(name, pa.int64()) for name in _TOKENS])
_BODY = pa.struct([("choices", pa.list_(_CHOICE)), ("usage", _USAGE), ("error", _ERROR)])
_RESPONSE = pa.struct([("status_code", pa.int64()), ("body", _BODY)])
#: Only the fields we read: the Arrow reader skips everything else in a line. Explicit,
#: because inference breaks on an all-null ``error`` in the first block of a file.
_LINE_SCHEMA = pa.schema([("custom_id", _STR), ("response", _RESPONSE), ("error", _ERROR)])

#: How result files are read: 4 MiB blocks, parsed on every core.
READ_OPTIONS = pj.ReadOptions(block_size=4 << 20)

_ANSWERS = pa.schema(
    [
        ("response", _STR),
        ("finish_reason", _STR),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
    ]
)
_ERRORS = pa.schema([("error_code", _STR), ("error_message", _STR)])


@dataclass(frozen=True)
class LineFormat:
    """How to read the answer fields of one endpoint's result lines.

    ``line_schema`` is the pruned Arrow schema of a line (``custom_id``, ``response``
    with ``status_code`` and ``body``, ``error``); ``arrow_answers`` takes the parsed ``body``
    struct array and returns one array per field of ``answers``; ``line_answers`` does the
    same for one parsed body dict (the tolerant parser).
    """

    line_schema: pa.Schema
    answers: pa.Schema
    arrow_answers: Callable[[pa.Array], list[pa.Array]]
    line_answers: Callable[[dict[str, Any]], tuple[Any, ...]]

    @property
    def columns(self) -> tuple[str, ...]:
        """The result columns: the answer fields, then error_code, error_message, status."""
        return (*self.answers.names, *_ERRORS.names, "status")


@dataclass(frozen=True)
class _Lines:
    """The usable content of result lines, whichever parser read them.

    ``answers`` has one row per line (only the rows of successes are ever used), ``errors``
    one row per failed line, in line order: error fields are computed for the few failures
    only, and no column is ever masked row by row.
    """

    custom_id: pa.Array
    ok: np.ndarray
    answers: pa.Table
    errors: pa.Table

    @staticmethod
    def concat(parts: Sequence[_Lines], answers: pa.Schema = _ANSWERS) -> _Lines:
        if not parts:
            return _Lines(pa.array([], _STR), np.zeros(0, bool), answers.empty_table(),
                          _ERRORS.empty_table())  # fmt: skip
        return _Lines(
            pa.concat_arrays([p.custom_id for p in parts]),
            np.concatenate([p.ok for p in parts]),
            pa.concat_tables([p.answers for p in parts]).combine_chunks(),
            pa.concat_tables([p.errors for p in parts]).combine_chunks(),
        )


#: Why a row has no line, by terminal batch status: (error_code, error_message).
_NO_LINE = {  # the status follows from the code, as for any failed line
    "completed": ("missing_result", "The batch completed without a result for this row."),
    "expired": ("batch_expired", "The batch expired before this request ran."),
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
    "failed": ("batch_failed", "The batch failed; no request ran."),
}


def _reason(batch_status: str) -> str:
    """The ``_NO_LINE`` key for a batch status; an unknown status counts as ``completed``."""
    if batch_status == "cancelling":
        return "cancelled"
    return batch_status if batch_status in _NO_LINE else "completed"


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard's batch left behind."""

    positions: np.ndarray
    """The shard's row positions (``Shard.positions``)."""
    batch_status: str
    """Terminal batch status: ``completed``, ``expired``, ``cancelled`` or ``failed``."""
    files: Sequence[bytes | Path]
    """The downloaded output and error files (0, 1 or 2; either may be absent)."""


def collect_results(plan: RequestPlan, outcomes: Sequence[ShardOutcome]) -> pa.Table:
    """One row per frame row (``plan.n_rows``), in frame order, with the 7 RESULT_COLUMNS.

    A line is a success iff its ``error`` is null and ``200 <= response.status_code < 300``.
    Rows without a line take their status from their batch (``expired``, ``cancelled``,
    ``failed`` with ``batch_failed``); a completed batch that omits rows gives them
    ``failed`` / ``missing_result`` and a :class:`MissingResultWarning`. Unparseable lines,
    unknown ids and duplicates are warned about and never joined to a wrong row.

    Example
    -------
    >>> table = collect_results(plan, [ShardOutcome(shard.positions, "completed", [out])])
    >>> table.column("status")
    """
    return collect_lines(plan, outcomes, CHAT_FORMAT)


def collect_lines(plan: RequestPlan, outcomes: Sequence[ShardOutcome], fmt: LineFormat) -> pa.Table:
    """:func:`collect_results` for any endpoint: the columns are ``fmt.columns``."""
    shard_of_row = np.full(plan.n_rows, -1, dtype=np.int64)
    parts, owners = [], []
    for number, outcome in enumerate(outcomes):
        shard_of_row[np.asarray(outcome.positions, dtype=np.int64)] = number
        for file in outcome.files:
            part = _read_lines(file, fmt)
            parts.append(part)
            owners.append(np.full(len(part.ok), number, dtype=np.int64))
    lines = _Lines.concat(parts, fmt.answers)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    line_of_row = _match_lines(plan, lines, owner, shard_of_row)
    return _assemble(lines, line_of_row, shard_of_row, outcomes, fmt)


def check_result_columns(
    frame: pd.DataFrame,
    prefix: str = "",
    extra: Sequence[str] = (),
    columns: Sequence[str] = RESULT_COLUMNS,
) -> None:
    """Raise :class:`ColumnError` if a (prefixed) result column already exists in ``frame``.

    ``extra`` names more columns the results will add (a structured output's fields); one
    that repeats a result column is an error too. Call it before uploading anything, so a
    collision never costs a batch.
    """
    repeated = sorted(set(columns) & set(extra))
    if repeated:
        raise ColumnError(
            f"the schema's field(s) {', '.join(map(repr, repeated))} would collide with the "
            "result columns of the same name; rename the field(s)",
            column=repeated[0],
        )
    names = (*columns, *extra)
    clashes = [prefix + name for name in names if prefix + name in frame.columns]
    if clashes:
        raise ColumnError(
            f"the frame already has column(s) {', '.join(map(repr, clashes))}, which the "
            f"results would overwrite; pass a prefix, e.g. prefix='nm_'",
            column=clashes[0],
        )


def join_results(frame: pd.DataFrame, results: pa.Table, prefix: str = "") -> pd.DataFrame:
    """A new frame: the input's columns, index and order, plus the result columns (prefixed).

    Strings are ``pd.StringDtype("pyarrow")`` and token counts ``Int64``, missing as ``NA``.
    The caller's frame is never modified.

    Example
    -------
    >>> out = join_results(df, collect_results(plan, outcomes), prefix="nm_")
    >>> out[["nm_response", "nm_status"]]
    """
    check_result_columns(frame, prefix)
    if results.num_rows != len(frame):
        raise InputError(f"{results.num_rows} results for a frame of {len(frame)} rows")
    out = frame.copy(deep=False)  # copy-on-write: adding columns never reaches the caller
    for name in RESULT_COLUMNS:
        out[prefix + name] = _to_pandas(results.column(name))
    return out


# -- parsing ----------------------------------------------------------------------------------


def _read_lines(file: bytes | Path, fmt: LineFormat) -> _Lines:
    """A result file's lines: Arrow when it can, the tolerant orjson parser when it must."""
    data = file if isinstance(file, bytes) else None
    if data is not None and not data.strip():
        return _Lines.concat([], fmt.answers)
    try:
        source: Any = pa.BufferReader(data) if data is not None else str(file)
        table = pj.read_json(
            source,
            read_options=READ_OPTIONS,
            parse_options=pj.ParseOptions(
                explicit_schema=fmt.line_schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return _parse_tolerant(data if data is not None else Path(str(file)).read_bytes(), fmt)
    return _from_arrow(table.combine_chunks(), fmt)


def _from_arrow(table: pa.Table, fmt: LineFormat) -> _Lines:
    """Arrow-parsed lines -> _Lines, vectorised."""
    response = table.column("response").chunk(0) if table.num_rows else None
    if response is None:
        return _Lines.concat([], fmt.answers)
    body = pc.struct_field(response, "body")
    status_code = pc.struct_field(response, "status_code")
    ok = pc.and_kleene(
        table.column("error").chunk(0).is_null(),
        pc.and_(pc.greater_equal(status_code, 200), pc.less(status_code, 300)),
    )
    ok_mask = np.asarray(ok.fill_null(False), dtype=bool)
    answers = fmt.arrow_answers(body)
    failed = table.filter(pa.array(~ok_mask))
    return _Lines(
        _cast(table.column("custom_id").chunk(0), _STR),
        ok_mask,
        pa.Table.from_arrays(
            [_cast(a, f.type) for a, f in zip(answers, fmt.answers, strict=True)],
            schema=fmt.answers,
        ),
        _error_fields_arrow(failed),
    )


def _cast(values: pa.Array, to: pa.DataType) -> pa.Array:
    return values if values.type == to else pc.cast(values, to)


def _chat_answers(body: pa.Array) -> list[pa.Array]:
    content, finish = _first_choice(pc.struct_field(body, "choices"))
    usage = pc.struct_field(body, "usage")
    return [content, finish, *(pc.struct_field(usage, f) for f in _TOKENS)]


def _error_fields_arrow(failed: pa.Table) -> pa.Table:
    """error_code / error_message of failed lines: top-level ``error``, then the body's."""
    if failed.num_rows == 0:
        return _ERRORS.empty_table()
    failed = failed.combine_chunks()
    error = failed.column("error").chunk(0)
    response = failed.column("response").chunk(0)
    body_error = pc.struct_field(pc.struct_field(response, "body"), "error")
    status_code = pc.struct_field(response, "status_code")
    http = pa.scalar("http_", _STR), pa.scalar("", _STR)
    code = pc.coalesce(
        *(
            _cast(pc.struct_field(e, k), _STR)
            for e in (error, body_error)
            for k in ("code", "type")
        ),
        pc.binary_join_element_wise(http[0], pc.cast(status_code, _STR), http[1]),
        pa.scalar("unknown_error", _STR),
    )
    message = pc.coalesce(
        _cast(pc.struct_field(error, "message"), _STR),
        _cast(pc.struct_field(body_error, "message"), _STR),
    )
    return pa.Table.from_arrays([pc.cast(code, _STR), pc.cast(message, _STR)], schema=_ERRORS)


def _first_choice(choices: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``choices[0].message.content`` and ``.finish_reason``; null for a null or empty list.

    ``list_element(..., 0)`` raises on an empty list, so take by offsets where length > 0.
    """
    lengths = np.asarray(pc.list_value_length(choices).fill_null(0), dtype=np.int64)
    offsets = np.asarray(choices.offsets, dtype=np.int64)
    if lengths.size and lengths.min() == 1 == lengths.max():
        # The usual case, one choice per line: the first choices are a slice, not a copy.
        first = choices.values.slice(int(offsets[0]), len(choices))
    else:
        first = choices.values.take(pa.array(offsets[:-1], mask=lengths == 0))
    content = pc.struct_field(pc.struct_field(first, "message"), "content")
    return content, pc.struct_field(first, "finish_reason")


def _parse_tolerant(data: bytes, fmt: LineFormat) -> _Lines:
    """Per-line orjson parsing for files Arrow refuses; bad lines are warned about, skipped."""
    rows: list[tuple[Any, ...]] = []
    bad = 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(line, dict):
            rows.append(_line_fields(line, fmt))
        else:
            bad += 1
    if bad:
        warnings.warn(
            f"{bad} result line(s) are not valid JSON objects and were ignored; "
            "their rows count as missing",
            MissingResultWarning,
            stacklevel=4,
        )
    end = 2 + len(fmt.answers)
    failed = [row[end:] for row in rows if not row[1]]
    return _Lines(
        pa.array([row[0] for row in rows], _STR),
        np.array([row[1] for row in rows], dtype=bool),
        _table([row[2:end] for row in rows], fmt.answers),
        _table(failed, _ERRORS),
    )


def _table(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[]] * len(schema)
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _line_fields(line: dict[str, Any], fmt: LineFormat) -> tuple[Any, ...]:
    """One parsed line -> the values of the normalised line table, defensively."""
    custom_id = line.get("custom_id")
    if isinstance(custom_id, int) and not isinstance(custom_id, bool):
        custom_id = str(custom_id)
    elif not isinstance(custom_id, str):
        custom_id = None
    response = _dict(line.get("response"))
    body = _dict(response.get("body"))
    status_code = response.get("status_code")
    error = line.get("error")
    ok = error is None and isinstance(status_code, int) and 200 <= status_code < 300
    if ok:
        return (custom_id, True, *fmt.line_answers(body), None, None)
    code, message = _error_fields(error, _dict(body.get("error")), status_code)
    return (custom_id, False, *([None] * len(fmt.answers)), code, message)


def _chat_line_answers(body: dict[str, Any]) -> tuple[Any, ...]:
    content, finish = _choice_fields(body)
    usage = _dict(body.get("usage"))
    return (content, finish, _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")))  # fmt: skip


def _choice_fields(body: dict[str, Any]) -> tuple[str | None, str | None]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None, None
    first = _dict(choices[0])
    return _str(_dict(first.get("message")).get("content")), _str(first.get("finish_reason"))


def _error_fields(
    error: Any, body_error: dict[str, Any], status_code: Any
) -> tuple[str, str | None]:
    """(code, message): the top-level ``error`` first, then ``response.body.error``."""
    if isinstance(error, str):  # vLLM writes the message as a plain string
        return f"http_{status_code}" if isinstance(status_code, int) else "error", error
    top = _dict(error)
    code = _str(top.get("code")) or _str(top.get("type"))
    code = code or _str(body_error.get("code")) or _str(body_error.get("type"))
    if code is None:
        code = f"http_{status_code}" if isinstance(status_code, int) else "unknown_error"
    return code, _str(top.get("message")) or _str(body_error.get("message"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- matching lines to rows -------------------------------------------------------------------


def _match_lines(
    plan: RequestPlan, lines: _Lines, owner: np.ndarray, shard_of_row: np.ndarray
) -> np.ndarray:
    """For each frame row, the index of its line (-1 if none).

    A line counts only if its id is in the plan *and* belongs to the shard whose files it
    came from; of duplicates, a success wins.
    """
    positions = plan.positions_of(lines.custom_id)
    known = positions >= 0
    if known.all():  # the usual case: no masked indexing
        known = shard_of_row[positions] == owner
    else:
        known[known] = shard_of_row[positions[known]] == owner[known]
    if not known.all():
        warnings.warn(
            f"{int((~known).sum())} result line(s) have a custom_id that is not in this "
            "request plan (or not in the batch they came from) and were ignored",
            MissingResultWarning,
            stacklevel=3,
        )
    line_of_row = np.full(plan.n_rows, -1, dtype=np.int64)
    index = np.arange(len(lines.ok), dtype=np.int64)
    usable = slice(None) if known.all() else known  # a slice: no copies in the usual case
    line_of_row[positions[usable]] = index[usable]
    duplicated = int(known.sum()) - int(np.count_nonzero(line_of_row >= 0))
    if duplicated:  # rare: write again, successes last, so a success wins
        for keep in (known & ~lines.ok, known & lines.ok):
            line_of_row[positions[keep]] = index[keep]
        warnings.warn(
            f"{duplicated} duplicate result line(s) for the same custom_id were ignored "
            "(a success is kept over a failure)",
            MissingResultWarning,
            stacklevel=3,
        )
    return line_of_row


def _assemble(
    lines: _Lines,
    line_of_row: np.ndarray,
    shard_of_row: np.ndarray,
    outcomes: Sequence[ShardOutcome],
    fmt: LineFormat,
) -> pa.Table:
    """Every row's result: answer fields from its success line, error fields from its failed
    line or, for a row without a line, from a synthetic error saying why."""
    kinds = list(_NO_LINE)
    # Per shard (and a last entry for rows of no shard): which synthetic error explains a gap.
    by_shard = [kinds.index(_reason(o.batch_status)) for o in outcomes]
    reason_of_shard = np.array([*by_shard, kinds.index("completed")], dtype=np.int64)
    has_line = line_of_row >= 0
    missing = np.flatnonzero(~has_line)
    reason = reason_of_shard[shard_of_row[missing]]
    _warn_missing(int(np.count_nonzero(reason == kinds.index("completed"))))

    error_of_line = np.cumsum(~lines.ok) - 1  # line -> its row in lines.errors
    if missing.size == 0:  # the usual case: every row has a line; no masked indexing
        row_ok = lines.ok[line_of_row]
        error_of_row = error_of_line[line_of_row]
    else:
        row_ok = np.zeros(len(line_of_row), dtype=bool)
        row_ok[has_line] = lines.ok[line_of_row[has_line]]
        error_of_row = np.zeros(len(line_of_row), dtype=np.int64)
        error_of_row[has_line] = error_of_line[line_of_row[has_line]]
        error_of_row[missing] = lines.errors.num_rows + reason
    np.putmask(error_of_row, row_ok, 0)  # unused under the mask, but in bounds

    errors = pa.concat_tables([lines.errors, _synthetic_errors(kinds)]).combine_chunks()
    answer_rows = np.where(row_ok, line_of_row, 0)
    answer_take = pa.array(answer_rows, mask=~row_ok)
    error_take = pa.array(error_of_row, mask=row_ok)
    numbers = {f.name for f in fmt.answers if _is_number(f.type)}
    names = [n for n in fmt.answers.names if n not in numbers]
    jobs = [(_compact(lines.answers.column(n)), answer_take) for n in names]
    jobs += [(errors.column(n), error_take) for n in _ERRORS.names]
    gathered = dict(zip([*names, *_ERRORS.names], _gather(jobs), strict=True))
    for name in numbers:
        gathered[name] = _take_numbers(lines.answers.column(name), answer_rows, row_ok)
    columns = [gathered[name] for name in (*fmt.answers.names, *_ERRORS.names)]
    status = np.where(row_ok, 0, _status_codes(errors)[error_of_row]).astype(np.int8)
    columns.append(pa.DictionaryArray.from_arrays(pa.array(status), _STATUSES).cast(_STR))
    return pa.Table.from_arrays(columns, names=list(fmt.columns))


#: Index slices gathered at a time, in threads: lines arrive in any order, so each ``take``
#: reads memory at random, and Arrow releases the GIL while it gathers.
_WAYS = max(2, os.cpu_count() or 1)
_POOL_MIN = 1 << 16  # fewer rows are gathered in the calling thread


def _gather(jobs: list[tuple[pa.Array | pa.ChunkedArray, pa.Array]]) -> list[pa.ChunkedArray]:
    """``values.take(index)`` of every job, on every core: each index is cut into slices,
    taken side by side; a dictionary (see :func:`_compact`) is decoded slice by slice."""

    def take(values: pa.Array | pa.ChunkedArray, index: pa.Array) -> list[pa.Array]:
        taken = values.take(index)
        if pa.types.is_dictionary(taken.type):
            taken = taken.cast(_STR)
        return taken.chunks if isinstance(taken, pa.ChunkedArray) else [taken]

    def result_type(values: pa.Array | pa.ChunkedArray) -> pa.DataType:
        return _STR if pa.types.is_dictionary(values.type) else values.type

    n = len(jobs[0][1]) if jobs else 0
    if n < _POOL_MIN:
        return [pa.chunked_array(take(v, i), result_type(v)) for v, i in jobs]
    bounds = np.linspace(0, n, _WAYS + 1).astype(int)
    with ThreadPoolExecutor(_WAYS) as pool:
        futures = [
            [
                pool.submit(take, values, index.slice(a, b - a))
                for a, b in itertools.pairwise(bounds)
            ]
            for values, index in jobs
        ]
        return [
            pa.chunked_array([c for f in parts for c in f.result()], result_type(values))
            for parts, (values, _) in zip(futures, jobs, strict=True)
        ]


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _take_numbers(column: pa.ChunkedArray, rows: np.ndarray, ok: np.ndarray) -> pa.Array:
    """``column[rows]`` where ``ok``, else null: a NumPy gather, about half the time of
    Arrow's ``take`` with a null-masked index (token counts: two columns of every row)."""
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if len(values) == 0:
        return pa.nulls(len(rows), column.type)
    null = ~ok
    if values.null_count:
        null |= np.asarray(values.is_null(), dtype=bool)[rows]
    data = np.asarray(values.fill_null(0))[rows]
    return pa.array(data, type=column.type, mask=null)


def _compact(column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``column``, or, for a few distinct strings (finish_reason), a dictionary with int8
    indices: gathering one byte per row from a small array beats gathering strings ~3x."""
    if column.num_chunks == 1 and column.type == _STR and len(column) > 1000:
        distinct = pc.count_distinct(column.slice(0, 1000)).as_py()
        if distinct < 50:
            encoded = column.chunk(0).dictionary_encode()
            if len(encoded.dictionary) < 128:
                return pa.DictionaryArray.from_arrays(
                    encoded.indices.cast(pa.int8()), encoded.dictionary
                )
            return encoded
    return column


def _warn_missing(count: int) -> None:
    if count:
        warnings.warn(
            f"{count} row(s) got no result line although their batch ended; they are "
            "reported as failed with error_code 'missing_result'",
            MissingResultWarning,
            stacklevel=4,
        )


def _synthetic_errors(kinds: list[str]) -> pa.Table:
    codes = [_NO_LINE[k][0] for k in kinds]
    messages = [_NO_LINE[k][1] for k in kinds]
    return pa.Table.from_arrays([pa.array(codes, _STR), pa.array(messages, _STR)], schema=_ERRORS)


def _status_codes(errors: pa.Table) -> np.ndarray:
    """Index into ``_STATUSES`` of each failure: expired, cancelled, otherwise failed."""
    code = errors.column("error_code")
    expired = np.asarray(pc.equal(code, "batch_expired").fill_null(False), dtype=bool)
    cancelled = np.asarray(pc.equal(code, "batch_cancelled").fill_null(False), dtype=bool)
    return np.select([expired, cancelled], [2, 3], default=1)


CHAT_FORMAT = LineFormat(_LINE_SCHEMA, _ANSWERS, _chat_answers, _chat_line_answers)


def mark_invalid_output(table: pa.Table, invalid: np.ndarray, messages: Any) -> pa.Table:
    """``table`` with the ``invalid`` rows made ``failed`` / ``invalid_output``.

    For structured outputs: ``invalid`` and ``messages`` come from
    ``_schema.parse_structured`` (one per row, in row order); the rows' ``error_message``
    becomes the message (what failed). ``response`` keeps the raw answer, so a reader can see
    it; the other columns are unchanged.
    """
    invalid = np.asarray(invalid, dtype=bool)
    if len(invalid) != table.num_rows:
        raise InputError(f"{len(invalid)} flags for a table of {table.num_rows} rows")
    if not invalid.any():
        return table
    mask = pa.array(invalid)
    text = (
        messages
        if isinstance(messages, pa.Array)
        else pa.array(list(messages), _STR, from_pandas=True)
    )
    updates = {
        "status": pc.if_else(mask, pa.scalar("failed", _STR), table.column("status")),
        "error_code": pc.if_else(
            mask, pa.scalar("invalid_output", _STR), table.column("error_code")
        ),
        "error_message": pc.if_else(mask, pc.cast(text, _STR), table.column("error_message")),
    }
    for name, values in updates.items():
        table = table.set_column(table.column_names.index(name), name, values)
    return table


def _to_pandas(column: pa.ChunkedArray) -> pd.api.extensions.ExtensionArray:
    if pa.types.is_integer(column.type):
        values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        mask = np.asarray(values.is_null(), dtype=bool)
        data = np.asarray(values.fill_null(0), dtype=np.int64)
        return pd.arrays.IntegerArray(data, mask)
    return pd.array(pc.cast(column, _STR), dtype=pd.StringDtype("pyarrow"))
