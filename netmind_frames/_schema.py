"""Structured outputs: a schema -> ``response_format``, answers -> typed, validated columns.

A schema is a pydantic model class (recognised by its ``model_json_schema`` method; pydantic
is never imported here) or a JSON Schema dict whose top level is an object with
``properties``. :func:`response_format_for` makes the request parameter;
:func:`parse_structured` parses each answer with orjson, validates it against the schema (a
compiled validator for the subset structured outputs use, then the pydantic model itself when
one was given) and builds one nullable column per top-level property.

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

Validator coverage: ``type`` (one or a list, ``null`` included; ``integer`` accepts ``2.0``),
``properties``, ``required``, ``additionalProperties`` (``false`` or a schema), ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``, ``oneOf``
(exactly one branch), ``allOf``, local ``$ref`` (``#/$defs/...``, ``#/definitions/...``,
recursive models included), ``minimum``/``maximum`` and their exclusive forms,
``multipleOf``, ``minLength``/``maxLength``, ``pattern``. Other keywords (``format``,
``description``, ``default``, ...) are accepted and not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._errors import InputError

__all__ = [
    "OutputSchema",
    "Structured",
    "output_schema",
    "parse_structured",
    "response_format_for",
]

STRING = pd.StringDtype("pyarrow")
_NAME = re.compile(r"[^a-zA-Z0-9_-]+")

#: A check returns None when the value is valid, else a message (without the location).
_Check = Callable[[Any, str], "str | None"]


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
    check: _Check = field(default=lambda value, where: None, repr=False, compare=False)


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
    model = None
    if isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)):
        model = schema
        document = schema.model_json_schema()
        name = schema.__name__
        if strict:
            document = _strict_form(document)
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
    top = _resolve(document, document)
    properties = top.get("properties")
    if _kinds(top) - {"object"} or not isinstance(properties, dict) or not properties:
        raise InputError(
            "schema must describe a JSON object with 'properties' (one column per top-level "
            "property); wrap other answers in an object, e.g. "
            '{"type": "object", "properties": {"items": {...}}, "required": ["items"]}'
        )
    names = tuple(properties)
    dtypes = {n: _dtype(_as_dict(properties[n]), document) for n in names}
    return OutputSchema(
        name=_sanitise(name),
        schema=document,
        model=model,
        columns=names,
        dtypes=dtypes,
        check=_Compiler(document).compile(document),
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


def _as_dict(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}


def _resolve(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> dict[str, Any]:
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
        node, depth = _as_dict(target), depth + 1
    return node


def _kinds(node: dict[str, Any]) -> set[str]:
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


def _dtype(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """The pandas dtype of a top-level property (see the module docstring)."""
    node = _resolve(node, root)
    branches = node.get("anyOf", node.get("oneOf"))
    if isinstance(branches, list):
        real = [b for b in map(_as_dict, branches) if _kinds(_resolve(b, root)) != {"null"}]
        return _dtype(real[0], root) if len(real) == 1 else object
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if v is not None]
        if values and all(isinstance(v, str) for v in values):
            return pd.CategoricalDtype(list(dict.fromkeys(values)), ordered=False)
        return object
    if isinstance(node.get("const"), str):
        return STRING
    kinds = _kinds(node) - {"null"}
    if len(kinds) != 1:
        return object
    return {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": STRING}.get(
        kinds.pop(), object
    )


# -- the validator ----------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    return _json_type(value) == kind


def _where(path: str) -> str:
    return f"field {path!r}" if path else "the answer"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if _json_type(value) != "object" else "{...}"
    return text if len(text) <= 40 else text[:37] + "..."


class _Compiler:
    """Compile a JSON Schema into nested closures: checks run without re-reading the schema."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, _Check] = {}

    def compile(self, node: Any) -> _Check:
        if node is False:
            return _never
        if not isinstance(node, dict):
            return _always
        checks = [c for c in self._parts(node) if c is not None]
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]

        def all_of(value: Any, path: str) -> str | None:
            for check in checks:
                error = check(value, path)
                if error is not None:
                    return error
            return None

        return all_of

    def _parts(self, node: dict[str, Any]) -> list[_Check | None]:
        return [
            self._ref(node.get("$ref")),
            self._type(node),
            self._enum(node),
            self._branches(node),
            self._object(node),
            self._array(node),
            self._number(node),
            self._string(node),
        ]

    def _ref(self, ref: Any) -> _Check | None:
        if not isinstance(ref, str):
            return None
        target = _resolve({"$ref": ref}, self.root)  # raises on a bad ref, at compile time

        def check(value: Any, path: str) -> str | None:
            compiled = self.refs.get(ref)
            if compiled is None:  # compiled on first use: recursive models terminate
                compiled = self.refs[ref] = self.compile(target)
            return compiled(value, path)

        return check

    def _type(self, node: dict[str, Any]) -> _Check | None:
        kinds = sorted(_kinds(node))
        if not kinds:
            return None
        expected = " or ".join(kinds)

        def check(value: Any, path: str) -> str | None:
            for kind in kinds:
                if _is_type(value, kind):
                    return None
            return f"{_where(path)}: expected {expected}, got {_json_type(value)}"

        return check

    def _enum(self, node: dict[str, Any]) -> _Check | None:
        if "const" in node:
            const = node["const"]

            def check_const(value: Any, path: str) -> str | None:
                if value == const and _json_type(value) == _json_type(const):
                    return None
                return f"{_where(path)}: expected {_shown(const)}, got {_shown(value)}"

            return check_const
        enum = node.get("enum")
        if not isinstance(enum, list):
            return None
        hashable = {(_json_type(v), v) for v in enum if not isinstance(v, (list, dict))}
        listed = ", ".join(_shown(v) for v in enum[:10]) + (", ..." if len(enum) > 10 else "")

        def check_enum(value: Any, path: str) -> str | None:
            if isinstance(value, (list, dict)):
                if value in enum:
                    return None
            elif (_json_type(value), value) in hashable:
                return None
            return f"{_where(path)}: {_shown(value)} is not one of {listed}"

        return check_enum

    def _branches(self, node: dict[str, Any]) -> _Check | None:
        checks: list[_Check] = []
        for key in ("anyOf", "oneOf", "allOf"):
            branches = node.get(key)
            if isinstance(branches, list) and branches:
                checks.append(self._combine(key, [self.compile(b) for b in branches]))
        if not checks:
            return None
        return checks[0] if len(checks) == 1 else self.compile_list(checks)

    @staticmethod
    def compile_list(checks: list[_Check]) -> _Check:
        def check(value: Any, path: str) -> str | None:
            for c in checks:
                error = c(value, path)
                if error is not None:
                    return error
            return None

        return check

    @staticmethod
    def _combine(key: str, branches: list[_Check]) -> _Check:
        if key == "allOf":
            return _Compiler.compile_list(branches)

        def check(value: Any, path: str) -> str | None:
            errors = [b(value, path) for b in branches]
            matched = sum(e is None for e in errors)
            if matched == 1 or (matched and key == "anyOf"):
                return None
            if matched:
                return f"{_where(path)}: matches {matched} branches of oneOf, expected one"
            distinct = list(dict.fromkeys(e for e in errors if e is not None))
            if len(distinct) == 1:
                return distinct[0]
            return f"{_where(path)}: matches no branch of {key} ({'; '.join(distinct[:3])})"

        return check

    def _object(self, node: dict[str, Any]) -> _Check | None:
        props = node.get("properties")
        props = {k: self.compile(v) for k, v in props.items()} if isinstance(props, dict) else {}
        required = [r for r in node.get("required", []) if isinstance(r, str)]
        extra = node.get("additionalProperties", True)
        extra_check = None if extra is True or extra is False else self.compile(extra)
        if not props and not required and extra is True:
            return None
        items = list(props.items())
        known = props.keys()

        def check(value: Any, path: str) -> str | None:
            if not isinstance(value, dict):
                return None
            for name in required:
                if name not in value:
                    return f"{_where(_child(path, name))}: required but missing"
            for name, sub in items:
                if name in value:
                    error = sub(value[name], _child(path, name))
                    if error is not None:
                        return error
            if extra is not True:
                for name in value.keys() - known:
                    if extra_check is None:
                        return f"{_where(_child(path, name))}: not allowed (no such property)"
                    error = extra_check(value[name], _child(path, name))
                    if error is not None:
                        return error
            return None

        return check

    def _array(self, node: dict[str, Any]) -> _Check | None:
        items = self.compile(node["items"]) if "items" in node else None
        prefix = node.get("prefixItems")
        prefix_checks = [self.compile(p) for p in prefix] if isinstance(prefix, list) else []
        low, high = node.get("minItems"), node.get("maxItems")
        if items is None and not prefix_checks and low is None and high is None:
            return None

        def check(value: Any, path: str) -> str | None:
            if not isinstance(value, list):
                return None
            if low is not None and len(value) < low:
                return f"{_where(path)}: expected at least {low} items, got {len(value)}"
            if high is not None and len(value) > high:
                return f"{_where(path)}: expected at most {high} items, got {len(value)}"
            for i, item in enumerate(value):
                sub = prefix_checks[i] if i < len(prefix_checks) else items
                if sub is not None:
                    error = sub(item, f"{path}[{i}]")
                    if error is not None:
                        return error
            return None

        return check

    def _number(self, node: dict[str, Any]) -> _Check | None:
        bounds = [
            (node.get("minimum"), lambda v, b: v >= b, "at least"),
            (node.get("maximum"), lambda v, b: v <= b, "at most"),
            (node.get("exclusiveMinimum"), lambda v, b: v > b, "greater than"),
            (node.get("exclusiveMaximum"), lambda v, b: v < b, "less than"),
        ]
        tests = [(b, ok, what) for b, ok, what in bounds if _is_type(b, "number")]
        step = node.get("multipleOf")
        if not tests and not _is_type(step, "number"):
            return None

        def check(value: Any, path: str) -> str | None:
            if not _is_type(value, "number"):
                return None
            for bound, ok, what in tests:
                if not ok(value, bound):
                    return f"{_where(path)}: {value!r} is not {what} {bound!r}"
            if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
                return f"{_where(path)}: {value!r} is not a multiple of {step!r}"
            return None

        return check

    def _string(self, node: dict[str, Any]) -> _Check | None:
        low, high = node.get("minLength"), node.get("maxLength")
        pattern = re.compile(node["pattern"]) if isinstance(node.get("pattern"), str) else None
        if low is None and high is None and pattern is None:
            return None

        def check(value: Any, path: str) -> str | None:
            if not isinstance(value, str):
                return None
            if low is not None and len(value) < low:
                return f"{_where(path)}: expected at least {low} characters, got {len(value)}"
            if high is not None and len(value) > high:
                return f"{_where(path)}: expected at most {high} characters, got {len(value)}"
            if pattern is not None and pattern.search(value) is None:
                return f"{_where(path)}: does not match the pattern {pattern.pattern!r}"
            return None

        return check


def _always(value: Any, path: str) -> str | None:
    return None


def _never(value: Any, path: str) -> str | None:
    return f"{_where(path)}: no value is allowed here"


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
        JSON, fails the schema, or (for a pydantic model) fails ``model_validate``; its columns
        are NA. Values come from the JSON, not from the model instance.

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
    docs: list[Any] = [None] * n
    good = np.zeros(n, dtype=bool)
    messages: list[str | None] = [None] * n
    check, model = spec.check, spec.model
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for i in np.flatnonzero(ok).tolist():
        text = texts[i]
        if text is None:
            messages[i] = "the answer is empty (no content)"
            continue
        try:
            doc = loads(text)
        except decode_error as exc:
            messages[i] = f"the answer is not valid JSON: {exc}"
            continue
        error = check(doc, "")
        if error is None and model is not None:
            error = _model_error(model, doc)
        if error is None:
            docs[i] = doc
            good[i] = True
        else:
            messages[i] = error
    columns = {name: _column(name, spec.dtypes[name], docs, good) for name in spec.columns}
    # A value the column type cannot hold (an integer beyond int64) makes its row invalid too.
    overflowed = np.zeros(n, dtype=bool)
    for name, (_, overflow) in columns.items():
        for i in np.flatnonzero(overflow & good).tolist():
            good[i], overflowed[i] = False, True
            messages[i] = f"field {name!r}: integer out of range for Int64"
    frame = pd.DataFrame({name: _mask(values, overflowed) for name, (values, _) in columns.items()})
    invalid = ok & ~good
    return Structured(frame, invalid, pd.array(messages, dtype=STRING))


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


def _model_error(model: Any, doc: Any) -> str | None:
    try:
        model.model_validate(doc)
    except Exception as exc:  # pydantic.ValidationError, without importing pydantic
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise
        found = errors()
        if not found:
            return f"the answer fails the model {model.__name__}"
        first = found[0]
        path = ""
        for part in first.get("loc", ()):
            path = f"{path}[{part}]" if isinstance(part, int) else _child(path, str(part))
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"{_where(path)}: {first.get('msg', 'invalid')}{more}"
    return None


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
        data = np.asarray(arrow.fill_null(False), dtype=bool)
        return pd.arrays.BooleanArray(data, mask), overflow
    if isinstance(dtype, pd.StringDtype):
        return pd.array(pa.array(values, type=pa.large_string()), dtype=STRING), overflow
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Categorical(values, dtype=dtype), overflow
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out, overflow


def _mask(values: Any, rows: np.ndarray) -> Any:
    """Set ``rows`` (that turned invalid after their column was built) to NA."""
    if not rows.any():
        return values
    values = values.copy()
    values[rows] = None
    return values
