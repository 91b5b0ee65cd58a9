"""Structured outputs: a schema -> ``response_format``, answers -> typed, validated columns.

A schema is a pydantic model class (recognised by its ``model_json_schema`` method; pydantic
is never imported here) or a JSON Schema dict whose top level is an object with
``properties``. :func:`response_format_for` makes the request parameter;
:func:`parse_structured` validates the answers and builds one nullable pandas column per
top-level property; :func:`parse_native` builds Arrow columns of native types instead (the
Arrow and Polars results), without pandas.

For a JSON Schema dict in :mod:`._bulk`'s subset (flat objects of scalars, string enums and
arrays of scalars, as most extraction schemas are), Arrow's JSON reader reads all answers at
once and vectorised checks prove most of them valid: those never become Python objects. Every
other answer (and every answer under a pydantic model or another schema) is parsed with
orjson and checked by the compiled validator, all at once; that check alone decides a row is
invalid and words its message, so the result is the same either way.

Column dtypes, from the property's schema (``$ref`` resolved; a ``null`` branch or type only
makes it nullable):

=====================================  ==========================================
``integer``                            ``Int64``
``number``                             ``Float64``
``boolean``                            ``boolean``
``string``                             ``string[pyarrow]``
``enum`` of strings                    ``category`` (the enum's values, schema order)
``array``, ``object``, anything else   ``object``: the parsed JSON (lists, dicts), ``None``
=====================================  ==========================================

Validation (see :mod:`._validation`): a JSON Schema dict is checked by jsonschema-rs, the whole
of Draft 2020-12 (``format`` is an annotation, not checked); a pydantic model by pydantic
itself, in strict mode. A ``$ref`` must be local (``#/$defs/...``, ``#/definitions/...``,
``#``): nothing is ever fetched.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from ._bulk import BulkPlan, bulk_plan
from ._refs import as_dict, check_refs, resolve, type_names
from ._types import arrow_type
from ._validation import Failures, model_failures, schema_failures

__all__ = [
    "OutputSchema",
    "Structured",
    "output_schema",
    "parse_structured",
    "response_format_for",
]

STRING = pd.StringDtype("pyarrow")
_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


# -- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSchema:
    """A normalised schema: what is sent, how answers are checked, which columns come out."""

    name: str
    """The ``json_schema.name`` sent: ``[a-zA-Z0-9_-]{1,64}``."""
    schema: dict[str, Any] = field(repr=False)
    """The JSON Schema sent (for a pydantic model, its strict form: see :func:`output_schema`)."""
    model: Any = field(default=None, repr=False)
    """The pydantic model class, or None for a JSON Schema dict."""
    columns: tuple[str, ...] = ()
    """One column per top-level property, in schema order."""
    dtypes: dict[str, Any] = field(default_factory=dict, repr=False)
    """Column name -> pandas dtype (see the module docstring)."""
    failures: Failures = field(default=lambda docs, texts: {}, repr=False, compare=False)
    """The bulk check of parsed answers: {index: message} of those that fail."""
    types: dict[str, pa.DataType | None] = field(default_factory=dict, repr=False, compare=False)
    """Column name -> its native Arrow type (a string ``enum``: ``large_string``), or None."""
    plan: BulkPlan | None = field(default=None, repr=False, compare=False)
    """Arrow's checks that prove most answers valid without a Python object per row (a JSON
    Schema dict in :mod:`._bulk`'s subset), or None: every answer is checked one by one."""


def output_schema(schema: Any, *, strict: bool = True) -> OutputSchema:
    """Normalise ``schema`` (a pydantic model class or a JSON Schema dict) once.

    For a pydantic model with ``strict=True`` the sent schema is made acceptable to OpenAI's
    strict mode: every object gets ``additionalProperties: false`` and lists all its
    properties in ``required`` (pydantic already makes ``Optional`` fields nullable). A dict is
    sent exactly as given.

    Raises
    ------
    InputError
        Not a model or dict, not JSON-serialisable, or the top level is not an object with
        properties (there would be no columns).
    """
    if isinstance(schema, OutputSchema):
        return schema
    model: Any = None
    document: Any
    name: Any
    if isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)):
        model = schema
        document = model.model_json_schema()
        name = model.__name__
    elif isinstance(schema, dict):
        document = schema
        name = schema.get("title") if isinstance(schema.get("title"), str) else "output"
    else:
        raise InputError(
            "schema must be a pydantic model class or a JSON Schema dict, "
            f"got {type(schema).__name__}"
        )
    try:
        document = orjson.loads(orjson.dumps(document))  # a private, plain-JSON copy
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InputError(f"schema is not JSON-serialisable: {exc}") from None
    check_refs(document, document)
    top = resolve(document, document)
    properties = top.get("properties")
    if type_names(top) - {"object"} or not isinstance(properties, dict) or not properties:
        raise InputError(
            "schema must describe a JSON object with 'properties' (one column per top-level "
            "property); wrap other answers in an object, e.g. "
            '{"type": "object", "properties": {"items": {...}}, "required": ["items"]}'
        )
    names = tuple(properties)
    dtypes = {n: _dtype(as_dict(properties[n]), document) for n in names}
    # The strict form is only what is sent: answers are checked by the model itself.
    sent = _strict_form(document) if model is not None and strict else document
    return OutputSchema(
        name=_sanitise(name),
        schema=sent,
        model=model,
        columns=names,
        dtypes=dtypes,
        # Answers are checked against the model itself when there is one, else the schema.
        failures=model_failures(model) if model is not None else schema_failures(document),
        types={n: arrow_type(as_dict(properties[n]), document) for n in names},
        # A model's own checks (validators, strictness) are more than its schema says.
        plan=bulk_plan(document) if model is None else None,
    )


def response_format_for(schema: Any, *, strict: bool = True) -> dict[str, Any]:
    """The ``response_format`` request parameter for ``schema``.

    Returns ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``; the name
    is the model class's name or the schema's ``title`` (else ``"output"``), with characters
    outside ``[a-zA-Z0-9_-]`` replaced by ``_`` and cut to 64.

    Example
    -------
    >>> response_format_for({"title": "Review label", "type": "object",
    ...                      "properties": {"label": {"type": "string"}}})["json_schema"]["name"]
    'Review_label'
    """
    spec = output_schema(schema, strict=strict)
    return {
        "type": "json_schema",
        "json_schema": {"name": spec.name, "schema": spec.schema, "strict": bool(strict)},
    }


def _sanitise(name: str) -> str:
    return _NAME.sub("_", name).strip("_")[:64] or "output"


def _strict_form(node: Any) -> Any:
    """A copy of a pydantic schema in OpenAI's strict shape (see :func:`output_schema`)."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _strict_form(v) for k, v in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_strict_form(v) for v in out[key]]
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _strict_form(out[key])
    if isinstance(out.get("properties"), dict):
        out.setdefault("additionalProperties", False)
        out["required"] = list(out["properties"])
    return out


def _dtype(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """The pandas dtype of a top-level property (see the module docstring)."""
    node = resolve(node, root)
    branches = node.get("anyOf", node.get("oneOf"))
    if isinstance(branches, list):
        real = [b for b in map(as_dict, branches) if type_names(resolve(b, root)) != {"null"}]
        return _dtype(real[0], root) if len(real) == 1 else object
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if v is not None]
        if values and all(isinstance(v, str) for v in values):
            return pd.CategoricalDtype(list(dict.fromkeys(values)), ordered=False)
        return object
    if isinstance(node.get("const"), str):
        return STRING
    kinds = type_names(node) - {"null"}
    if len(kinds) != 1:
        return object
    return {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": STRING}.get(
        kinds.pop(), object
    )


# -- parsing answers --------------------------------------------------------------------------


class Structured(NamedTuple):
    """What :func:`parse_structured` returns."""

    columns: pd.DataFrame
    """One typed column per top-level property (RangeIndex, one row per answer)."""
    invalid: np.ndarray
    """bool per row: an ``ok`` row whose answer is not valid JSON or fails the schema."""
    messages: pd.api.extensions.ExtensionArray
    """string[pyarrow] per row: why the row is invalid, ``NA`` elsewhere."""


class NativeStructured(NamedTuple):
    """What :func:`parse_native` returns: the columns as Arrow arrays of their native types."""

    columns: dict[str, pa.Array]
    invalid: np.ndarray
    messages: pa.Array


def parse_structured(
    responses: pa.Array | pa.ChunkedArray | pd.Series | Sequence[str | None],
    status: pa.Array | pa.ChunkedArray | pd.Series | Sequence[str | None] | None,
    schema: Any,
) -> Structured:
    """Parse and validate each ``ok`` row's answer into typed columns.

    Parameters
    ----------
    responses:
        The answers' raw text (``response``), nullable.
    status:
        Each row's status; only ``"ok"`` rows are parsed (others get NA columns and are not
        invalid). None parses every row.
    schema:
        A pydantic model class, a JSON Schema dict or an :class:`OutputSchema`.

    Returns
    -------
    Structured
        ``(columns, invalid, messages)``. A row is invalid when its answer is missing, is not
        JSON, or fails the schema (for a pydantic model: fails ``model_validate_json`` in
        strict mode, its own validators included); its columns are NA. Values come from the
        JSON, not from the model instance.

    Example
    -------
    >>> cols, invalid, why = parse_structured(['{"n": 1}', '{"n": "x"}'], None,
    ...     {"type": "object", "properties": {"n": {"type": "integer"}}})
    >>> list(why)
    [<NA>, "field 'n': expected integer, got string"]
    """
    spec = output_schema(schema)
    columns, invalid, messages = _parse_answers(responses, status, spec, native=False)
    frame = pd.DataFrame({name: _pandas(spec.dtypes[name], columns[name]) for name in spec.columns})
    return Structured(frame, invalid, pd.array(messages, dtype=STRING))


def parse_native(
    responses: pa.Array | pa.ChunkedArray | pd.Series | Sequence[str | None],
    status: pa.Array | pa.ChunkedArray | pd.Series | Sequence[str | None] | None,
    schema: Any,
) -> NativeStructured:
    """:func:`parse_structured` with Arrow columns typed from the schema alone (no pandas):
    ``int64``, ``float64``, ``bool``, ``large_string``, a string ``enum`` as a dictionary of
    the schema's values in order, arrays as ``large_list``, objects as ``struct``; JSON text
    when the schema gives no single type."""
    spec = output_schema(schema)
    columns, invalid, messages = _parse_answers(responses, status, spec, native=True)
    return NativeStructured(columns, invalid, messages)


def _parse_answers(
    responses: Any, status: Any, spec: OutputSchema, *, native: bool
) -> tuple[dict[str, Any], np.ndarray, pa.Array]:
    """(column per property, invalid, messages as large_string).

    Rows that Arrow proves valid (:mod:`._bulk`) keep their values in Arrow; the others are
    parsed and checked one by one (orjson + the compiled validator), which decides them and
    words their messages. A column is a native Arrow array (``native``, or a typed pandas
    column's source), else a numpy object array of parsed values."""
    text = _text(responses)
    n = len(text)
    if status is None:
        ok = np.ones(n, dtype=bool)
    else:
        ok = np.asarray(pc.equal(_arrow(status), "ok").fill_null(False), dtype=bool)
        if len(ok) != n:
            raise InputError(f"{len(ok)} statuses for {n} responses")
    rows = np.flatnonzero(ok)
    at = np.full(n, -1, dtype=np.int64)  # row -> its row in the bulk table, or -1
    bulk = pa.table({})
    if spec.plan is not None and rows.size:
        proven = spec.plan.prove(text if rows.size == n else text.take(pa.array(rows)))
        at[rows], bulk = proven.at, proven.table
    exact = rows[at[rows] < 0]
    messages: list[str | None] = [None] * len(exact)
    with _collector_paused():  # every step makes many small objects that all survive
        sources = text.take(pa.array(exact)).to_pylist()
        kept, parsed, texts = _parse(sources, list(range(len(exact))), messages)
        failed = spec.failures(parsed, texts)
        for j, message in failed.items():
            messages[kept[j]] = message
        passed = np.ones(len(kept), dtype=bool)
        passed[list(failed)] = False
        docs = (
            parsed if not failed else [d for d, p in zip(parsed, passed.tolist(), strict=True) if p]
        )
        good = exact[np.asarray(kept, dtype=np.int64)[passed]]  # rows valid one by one
        values = {name: [d.get(name) for d in docs] for name in spec.columns}
        # Dropped while the collector is paused: otherwise its next run walks them all.
        del parsed, texts, sources, docs
    # A value the column type cannot hold (an integer beyond int64) makes its row invalid.
    fits = np.ones(len(good), dtype=bool)
    for name in spec.columns:
        if spec.dtypes[name] == "Int64" and len(good):
            # 5.0 is a JSON Schema integer (orjson also reads integers beyond 64 bits as floats).
            values[name] = [int(v) if isinstance(v, float) else v for v in values[name]]
            for j in np.flatnonzero(_beyond_int64(values[name]) & fits).tolist():
                fits[j] = False
                messages[int(np.searchsorted(exact, good[j]))] = (
                    f"field {name!r}: integer out of range for Int64"
                )
    good, where = good[fits], np.flatnonzero(fits)
    index = np.where(at >= 0, at, -1)
    index[good] = bulk.num_rows + np.arange(len(good))  # after the bulk rows
    spread = pa.array(index, mask=index < 0)
    with _collector_paused():  # lists read by Arrow become many Python objects too
        columns = {
            name: _column(
                spec, name, bulk, [values[name][j] for j in where.tolist()], spread, native
            )
            for name in spec.columns
        }
    valid = index >= 0
    invalid = ok & ~valid
    message_index = np.full(n, -1, dtype=np.int64)
    message_index[exact] = np.arange(len(exact))
    text_messages = pa.array(messages, pa.large_string()).take(
        pa.array(message_index, mask=message_index < 0)
    )
    return columns, invalid, text_messages


def _beyond_int64(values: list[Any]) -> np.ndarray:
    return np.array(
        [isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63
         for v in values], dtype=bool,
    )  # fmt: skip


def _column(
    spec: OutputSchema,
    name: str,
    bulk: pa.Table,
    values: list[Any],
    spread: pa.Array,
    native: bool,
) -> Any:
    """One property's column: the bulk rows' values then ``values`` (the rows valid one by
    one), put in row order by ``spread``."""
    kind = spec.types[name]
    dtype = spec.dtypes[name]
    if kind is not None:
        try:
            tail = pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            tail = None  # a nested value the type cannot hold: the column keeps parsed values
        if tail is not None and (native or dtype is not object):
            head = bulk.column(name).combine_chunks().cast(kind) if bulk.num_rows else None
            out = (pa.concat_arrays([head, tail]) if head is not None else tail).take(spread)
            if isinstance(dtype, pd.CategoricalDtype):
                return _dictionary(out, list(dtype.categories))
            return out
    # Parsed values, for a pandas object column or JSON text.
    head_values = bulk.column(name).to_pylist() if bulk.num_rows else []  # lists: to Python
    objects = np.empty(len(head_values) + len(values) + 1, dtype=object)
    objects[: len(head_values)] = head_values
    objects[len(head_values) : -1] = values
    index = np.asarray(spread.fill_null(-1), dtype=np.int64)
    picked = objects[index]  # -1: the trailing None
    if not native:
        return picked
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in picked], STRING_TYPE)


STRING_TYPE = pa.large_string()


def _dictionary(values: pa.Array, categories: list[str]) -> pa.DictionaryArray:
    """String values as a dictionary array holding every category, in schema order."""
    dictionary = pa.array(categories, STRING_TYPE)
    codes = pc.index_in(values, value_set=dictionary).cast(pa.int32())
    return pa.DictionaryArray.from_arrays(codes, dictionary)


def _pandas(dtype: Any, column: Any) -> Any:
    """A column of :func:`_parse_answers` as the pandas array of ``dtype`` (module docstring)."""
    if isinstance(column, np.ndarray):
        return pd.Series(column, dtype=object, copy=False)
    if dtype is object:  # lists and objects read by Arrow
        out = np.empty(len(column), dtype=object)
        out[:] = column.to_pylist()
        return pd.Series(out, dtype=object, copy=False)
    mask = np.asarray(column.is_null(), dtype=bool)
    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.asarray(column.fill_null(0), dtype=np.int64), mask)
    if dtype == "Float64":
        return pd.arrays.FloatingArray(np.asarray(column.fill_null(0.0), dtype=np.float64), mask)
    if dtype == "boolean":
        return pd.arrays.BooleanArray(np.asarray(column.fill_null(False), dtype=bool), mask)
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(column.indices.fill_null(-1), dtype=np.int32)
        return pd.Categorical.from_codes(codes, dtype=dtype)
    return pd.array(column, dtype=STRING)


def _parse(
    texts: list[Any], rows: list[int], messages: list[str | None]
) -> tuple[list[int], list[Any], list[str]]:
    """(rows whose answer is JSON, their documents, their texts); ``messages`` gets why the
    other rows are not. All at once with ``map`` when every answer parses (the usual case)."""
    sources = [texts[i] for i in rows]
    try:
        return rows, list(map(orjson.loads, sources)), sources
    except (orjson.JSONDecodeError, TypeError):  # a bad or missing answer: row by row
        pass
    kept: list[int] = []
    parsed: list[Any] = []
    sources = []
    for i in rows:
        text = texts[i]
        if text is None:
            messages[i] = "the answer is empty (no content)"
            continue
        try:
            parsed.append(orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            messages[i] = f"the answer is not valid JSON: {exc}"
            continue
        kept.append(i)
        sources.append(text)
    return kept, parsed, sources


def _text(values: Any) -> pa.Array:
    """The answers as one ``large_string`` array."""
    text = _arrow(values)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks else pa.array([], STRING_TYPE)
    return text if text.type == STRING_TYPE else pc.cast(text, STRING_TYPE)


def _arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, pd.Series):
        return pa.array(values.astype(object), type=pa.large_string(), from_pandas=True)
    return pa.array(list(values), type=pa.large_string())


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while answers are parsed.

    Parsing makes many small dicts and lists that all survive; each batch of them triggers a
    collection that walks every object made so far, which took over half the parsing time.
    JSON documents hold no cycles, so nothing is left for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
