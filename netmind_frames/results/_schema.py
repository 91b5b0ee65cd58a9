"""Structured outputs: a schema -> ``response_format``, answers -> typed, validated columns.

A schema is a pydantic model class (recognised by its ``model_json_schema`` method; pydantic
is never imported here) or a JSON Schema dict whose top level is an object with
``properties``. :func:`response_format_for` makes the request parameter;
:func:`parse_structured` parses each answer with orjson, validates them all at once (against
the JSON Schema, or with the pydantic model when one was given) and builds one nullable column
per top-level property.

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
import operator
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
import pyarrow.json as pj

from .._errors import InputError
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
    _check_refs(document, document)
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


def as_dict(node: Any) -> dict[str, Any]:
    """A schema node as a dict (``true``/``false`` schemas become ``{}``)."""
    return node if isinstance(node, dict) else {}


def resolve(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Follow ``$ref`` chains (local refs only) to the schema they name."""
    while isinstance(node.get("$ref"), str) and depth < 64:
        ref = node["$ref"]
        target: Any = root
        if ref != "#":
            if not ref.startswith("#/"):
                raise InputError(f"schema $ref {ref!r} is not local (only '#/...' is supported)")
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise InputError(f"schema $ref {ref!r} points nowhere")
                target = target[part]
        node, depth = as_dict(target), depth + 1
    return node


def type_names(node: dict[str, Any]) -> set[str]:
    """The type names a node allows (``type`` as a string or a list)."""
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


#: Keywords whose values are data, not schemas: a "$ref" key inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _check_refs(node: Any, root: dict[str, Any]) -> None:
    """Every ``$ref`` in the schema resolves locally, or a clear error now (not at validation)."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            resolve({"$ref": node["$ref"]}, root)
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                _check_refs(value, root)
    elif isinstance(node, list):
        for value in node:
            _check_refs(value, root)


# -- parsing answers --------------------------------------------------------------------------


class Structured(NamedTuple):
    """What :func:`parse_structured` returns."""

    columns: pd.DataFrame
    """One typed column per top-level property (RangeIndex, one row per answer)."""
    invalid: np.ndarray
    """bool per row: an ``ok`` row whose answer is not valid JSON or fails the schema."""
    messages: pd.api.extensions.ExtensionArray
    """string[pyarrow] per row: why the row is invalid, ``NA`` elsewhere."""


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
    texts = _as_list(responses)
    n = len(texts)
    if status is None:
        ok = np.ones(n, dtype=bool)
    else:
        ok = np.asarray(pc.equal(_arrow(status), "ok").fill_null(False), dtype=bool)
        if len(ok) != n:
            raise InputError(f"{len(ok)} statuses for {n} responses")
    good = np.zeros(n, dtype=bool)
    messages: list[str | None] = [None] * n
    with _collector_paused():  # every step makes many small objects that all survive
        rows, parsed, sources = _parse(texts, np.flatnonzero(ok).tolist(), messages)
        failed = spec.failures(parsed, sources)
        for j, message in failed.items():
            messages[rows[j]] = message
        passed = np.ones(len(rows), dtype=bool)
        passed[list(failed)] = False
        good[np.asarray(rows, dtype=np.int64)[passed]] = True
        if not failed:
            good_docs = parsed
        else:
            good_docs = [doc for doc, keep in zip(parsed, passed.tolist(), strict=True) if keep]
        frame = _arrow_columns(spec, responses, good_docs, good)
        overflowed = np.zeros(n, dtype=bool)
        if frame is None:  # Arrow refused some answer: build the columns value by value
            docs: list[Any] = [None] * n
            for i, doc in zip(np.flatnonzero(good).tolist(), good_docs, strict=True):
                docs[i] = doc
            columns = {name: _column(name, spec.dtypes[name], docs, good) for name in spec.columns}
            # A value the column type cannot hold (an integer beyond int64) makes its row
            # invalid too.
            for name, (_, overflow) in columns.items():
                for i in np.flatnonzero(overflow & good).tolist():
                    good[i], overflowed[i] = False, True
                    messages[i] = f"field {name!r}: integer out of range for Int64"
            frame = pd.DataFrame(
                {name: _mask(values, overflowed) for name, (values, _) in columns.items()}
            )
        # Dropped while the collector is paused: otherwise its next run walks them all.
        del good_docs, parsed, sources
    invalid = ok & ~good
    return Structured(frame, invalid, pd.array(messages, dtype=STRING))


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


#: pandas dtype -> the Arrow type the JSON reader parses a column's values into.
_READ_TYPES = {"Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_()}


def _read_type(dtype: Any) -> pa.DataType | None:
    if isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)):
        return pa.large_string()
    return _READ_TYPES.get(dtype) if isinstance(dtype, str) else None


def _arrow_columns(
    spec: OutputSchema, responses: Any, docs: list[Any], good: np.ndarray
) -> pd.DataFrame | None:
    """The typed columns of the ``good`` rows (``docs``: their parsed answers, in row order),
    their answers parsed by Arrow's JSON reader
    (C++, on every core) with an explicit schema; nested values (``object`` columns) come
    from the parsed documents. None when Arrow refuses an answer (an integer beyond int64,
    ``5.0`` for an integer): the caller then builds the columns value by value."""
    fields = [(n, _read_type(spec.dtypes[n])) for n in spec.columns]
    schema = pa.schema([(n, t) for n, t in fields if t is not None])
    rows = np.flatnonzero(good)
    if not len(schema) or not rows.size:
        return None
    text = _arrow(responses)
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    text = pc.cast(text, pa.large_string()).take(pa.array(rows))
    for raw in ("\n", "\r"):  # in valid JSON only whitespace: keep one answer per line
        text = pc.replace_substring(text, raw, " ")
    newline, empty = pa.scalar("\n", pa.large_string()), pa.scalar("", pa.large_string())
    lines = pc.binary_join_element_wise(text, newline, empty)
    _, offsets, data = lines.buffers()
    size = int(np.frombuffer(offsets, np.int64, len(lines) + 1, lines.offset * 8)[-1])
    try:
        table = pj.read_json(
            pa.BufferReader(pa.py_buffer(data)[:size]),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != rows.size:
        return None
    where = np.zeros(len(good), dtype=np.int64)
    where[rows] = np.arange(rows.size)
    spread = pa.array(where, mask=~good)  # row -> its line, null for the other rows
    out: dict[str, Any] = {}
    for name, kind in fields:
        dtype = spec.dtypes[name]
        if kind is None:
            values = np.empty(len(good), dtype=object)
            values[rows] = list(map(operator.methodcaller("get", name), docs))
            out[name] = pd.Series(values, dtype=object, copy=False)
        else:
            out[name] = _typed(dtype, table.column(name).combine_chunks().take(spread))
    return pd.DataFrame(out)


def _typed(dtype: Any, arrow: pa.Array) -> Any:
    """An Arrow column as the pandas array of ``dtype`` (see the module docstring)."""
    mask = np.asarray(arrow.is_null(), dtype=bool)
    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.asarray(arrow.fill_null(0), dtype=np.int64), mask)
    if dtype == "Float64":
        return pd.arrays.FloatingArray(np.asarray(arrow.fill_null(0.0), dtype=np.float64), mask)
    if dtype == "boolean":
        return pd.arrays.BooleanArray(np.asarray(arrow.fill_null(False), dtype=bool), mask)
    if isinstance(dtype, pd.CategoricalDtype):
        categories = pa.array(list(dtype.categories), type=pa.large_string())
        codes = pc.index_in(arrow, value_set=categories)
        return pd.Categorical.from_codes(
            np.asarray(codes.fill_null(-1), dtype=np.int32), dtype=dtype
        )
    return pd.array(arrow, dtype=STRING)


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_pylist()
    if isinstance(values, pd.Series):
        return [None if v is None or v is pd.NA or v != v else v for v in values.tolist()]
    return list(values)


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


def _column(name: str, dtype: Any, docs: list[Any], good: np.ndarray) -> tuple[Any, np.ndarray]:
    """(values, rows whose value does not fit the dtype) of one top-level property."""
    values = [d.get(name) if g else None for d, g in zip(docs, good, strict=True)]
    overflow = np.zeros(len(values), dtype=bool)
    if dtype == "Int64":
        values = [int(v) if isinstance(v, float) else v for v in values]
        try:
            arrow = pa.array(values, type=pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            overflow = np.array([v is not None and not -(2**63) <= v < 2**63 for v in values])
            arrow = pa.array([None if o else v for v, o in zip(values, overflow, strict=True)],
                             type=pa.int64())  # fmt: skip
        mask = np.asarray(arrow.is_null(), dtype=bool)
        data = np.asarray(arrow.fill_null(0), dtype=np.int64)
        return pd.arrays.IntegerArray(data, mask), overflow
    if dtype == "Float64":
        arrow = pa.array(values, type=pa.float64())
        mask = np.asarray(arrow.is_null(), dtype=bool)
        return pd.arrays.FloatingArray(np.asarray(arrow.fill_null(0.0)), mask), overflow
    if dtype == "boolean":
        arrow = pa.array(values, type=pa.bool_())
        mask = np.asarray(arrow.is_null(), dtype=bool)
        flags = np.asarray(arrow.fill_null(False), dtype=bool)
        return pd.arrays.BooleanArray(flags, mask), overflow
    if isinstance(dtype, pd.StringDtype):
        return pd.array(pa.array(values, type=pa.large_string()), dtype=STRING), overflow
    if isinstance(dtype, pd.CategoricalDtype):
        # Codes looked up in Arrow: pd.Categorical(values) hashes Python strings one by one.
        categories = pa.array(list(dtype.categories), type=pa.large_string())
        codes = pc.index_in(pa.array(values, type=pa.large_string()), value_set=categories)
        codes_np = np.asarray(codes.fill_null(-1), dtype=np.int32)
        return pd.Categorical.from_codes(codes_np, dtype=dtype), overflow
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return pd.Series(out, dtype=object, copy=False), overflow


def _mask(values: Any, rows: np.ndarray) -> Any:
    """Set ``rows`` (that turned invalid after their column was built) to NA."""
    if not rows.any():
        return values
    values = values.copy()
    values[rows] = None
    return values
