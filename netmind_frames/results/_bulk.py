"""Proving structured answers valid in bulk: Arrow reads them all, no Python object per row.

For a JSON Schema in the subset below, the answers are joined one per line and read by
Arrow's JSON reader (C++, threaded) with an explicit schema. The reader's strict kinds check
each property's JSON type (a string where a number belongs fails the read), and vectorised
Arrow compute checks the rest: bounds, lengths, string enums, ``required``,
``additionalProperties: false``. A row is *proven* valid only when every check passes. Every
other row goes to the exact per-row check (orjson + the compiled validator), which decides it
and words its message: this module never says a row is invalid, only "ask the exact check".

A read fails as a whole when one line is wrong, so rows likely to fail it are set aside first
(one regular expression over all texts finds a property whose value starts with the wrong
kind of token); when a read still fails, the lines are read in halves down to 64 rows, and
the rows of a failing piece go to the exact check.

The subset: a top-level ``object`` with ``properties``, ``required`` and
``additionalProperties`` (``true``/``false``), property names of ``[A-Za-z0-9_-]``; each
property an ``integer``/``number`` (with ``minimum``, ``maximum``, ``exclusiveMinimum``,
``exclusiveMaximum``), ``string`` (``minLength``, ``maxLength``), ``boolean``, a string
``enum`` or ``const``, or an ``array`` of those scalar types (``minItems``, ``maxItems``);
each maybe nullable (``"type": [..., "null"]`` or ``anyOf``/``oneOf`` with ``{"type":
"null"}``); annotations (``title``, ``description``, ``format``, ...) anywhere. Any other
schema is checked row by row as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ._refs import as_dict, resolve, type_names

__all__ = ["BulkPlan", "Proven", "bulk_plan"]

#: Keywords that never change whether a value is valid.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
     "writeOnly", "format"}
)  # fmt: skip
_TOP_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "$schema",
                       "$defs", "definitions"})  # fmt: skip
_BOUND_KEYS = {"minimum": "less", "maximum": "greater", "exclusiveMinimum": "less_equal",
               "exclusiveMaximum": "greater_equal"}  # fmt: skip
_KEYS: dict[str, frozenset[str]] = {
    "integer": frozenset({"type", *_BOUND_KEYS}),
    "number": frozenset({"type", *_BOUND_KEYS}),
    "string": frozenset({"type", "minLength", "maxLength"}),
    "boolean": frozenset({"type"}),
    "array": frozenset({"type", "items", "minItems", "maxItems"}),
}
_READ: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.large_string(),
}
#: The first character of a value of each kind (``n``: null, checked apart).
_STARTS = {"integer": "-0-9n", "number": "-0-9n", "string": '"n', "boolean": "tfn", "array": r"\[n"}
_NAME = re.compile(r"[A-Za-z0-9_-]+")
#: Smallest piece of lines read again on its own when a read fails.
_SMALLEST = 64


@dataclass(frozen=True)
class _Prop:
    """One property's checks."""

    name: str
    kind: str
    nullable: bool = False
    required: bool = False
    bounds: tuple[tuple[str, float], ...] = ()
    lengths: tuple[int | None, int | None] = (None, None)
    enum: tuple[str, ...] | None = None
    item: _Prop | None = None

    @property
    def read_type(self) -> pa.DataType:
        if self.item is not None:
            return pa.list_(self.item.read_type)  # the reader makes no large_list
        return _READ[self.kind]


@dataclass(frozen=True)
class Proven:
    """What :meth:`BulkPlan.prove` found: the rows read and proven, and their values."""

    table: pa.Table
    """The proven rows' values (and maybe others'), one column per property, read types."""
    at: np.ndarray
    """int64 per answer: its row in ``table``, or -1 when it is not proven valid."""


@dataclass(frozen=True)
class BulkPlan:
    """The Arrow checks of one schema (see the module docstring)."""

    props: tuple[_Prop, ...]
    closed: bool
    """``additionalProperties: false``."""

    def prove(self, texts: pa.Array) -> Proven:
        """Which of ``texts`` (a string array of answers, no nulls needed) are surely valid."""
        text = pc.cast(texts, pa.large_string())
        n = len(text)
        # Valid JSON has raw newlines only as whitespace: one answer per line.
        for raw in ("\n", "\r"):
            text = pc.replace_substring(text, raw, " ")
        aside = np.asarray(pc.invert(pc.fill_null(self._likely_read(text), False)), dtype=bool)
        at = np.full(n, -1, dtype=np.int64)
        if aside.all():
            return Proven(pa.table({}), at)
        # The rows set aside are read as "{}" (nulls in the joined lines): no copy of the rest.
        table, got = self._read(_nulled(text, aside) if aside.any() else text)
        if table is None or not got.any():
            return Proven(pa.table({}), at)
        good = got & ~aside & self._passes(table, text)
        at[good] = np.flatnonzero(good)
        return Proven(table, at)

    def _likely_read(self, text: pa.Array) -> pa.Array:
        """True where a read is likely to take the answer: it starts as an object, and no
        property's value starts as the wrong kind of token (this only saves failed reads).
        One regular expression, so one pass over the texts."""
        wrong = [r"^\s*([^{\s]|$)"]
        for p in self.props:
            wrong.append(f'"{p.name}"\\s*:\\s*[^{_STARTS[p.kind]}\\s]')
            if p.kind == "integer":
                wrong.append(f'"{p.name}"\\s*:\\s*-?[0-9]+[.eE]')
        return pc.invert(pc.match_substring_regex(text, "|".join(wrong)))

    def _read(self, text: pa.Array) -> tuple[pa.Table | None, np.ndarray]:
        """The answers read with the plan's schema (null rows where a piece failed), and which
        rows were read."""
        lines = pc.binary_join_element_wise(
            text,
            pa.scalar("\n", pa.large_string()),
            pa.scalar("", pa.large_string()),
            null_handling="replace",
            null_replacement="{}",
        )
        _, offsets_buf, data_buf = lines.buffers()
        offsets = np.frombuffer(offsets_buf, np.int64, len(lines) + 1, lines.offset * 8)
        data = pa.py_buffer(data_buf)
        schema = pa.schema([(p.name, p.read_type) for p in self.props])
        behaviour = "infer" if self.closed else "ignore"
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=behaviour)

        def read(start: int, stop: int) -> pa.Table | None:
            piece = data[int(offsets[start]) : int(offsets[stop])]
            try:
                table = pj.read_json(pa.BufferReader(piece), parse_options=options)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return None
            return table if table.num_rows == stop - start else None

        whole = read(0, len(text))
        if whole is not None:
            return whole, np.ones(len(text), dtype=bool)
        # Some line fails the read: halve the pieces that fail, down to _SMALLEST rows.
        pieces: list[tuple[int, pa.Table]] = []
        pending = [(0, len(text))]
        while pending:
            start, stop = pending.pop()
            table = read(start, stop) if (start, stop) != (0, len(text)) else None
            if table is not None:
                pieces.append((start, table))
            elif stop - start > _SMALLEST:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]
        got = np.zeros(len(text), dtype=bool)
        if not pieces:
            return None, got
        pieces.sort(key=lambda piece: piece[0])
        try:
            joined = pa.concat_tables([t for _, t in pieces], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # extra keys of different types
            return None, got
        where = np.full(len(text), -1, dtype=np.int64)
        first = 0
        for start, table in pieces:
            where[start : start + table.num_rows] = np.arange(first, first + table.num_rows)
            got[start : start + table.num_rows] = True
            first += table.num_rows
        spread = pa.array(where, mask=where < 0)
        return joined.take(spread), got

    def _passes(self, table: pa.Table, text: pa.Array) -> np.ndarray:
        """bool per row: every check passes (``table`` rows and ``text`` aligned)."""
        bad = pa.array(np.zeros(table.num_rows, dtype=bool))
        escaped: list[pa.Array] = []  # found once, when first needed

        def escape() -> pa.Array:
            """True where the answer has a ``\\u`` escape (a key may be spelled with them)."""
            if not escaped:
                escaped.append(pc.match_substring(text, "\\u"))
            return escaped[0]

        def key_in(name: str) -> pa.Array:
            """True where the key may be in the answer."""
            return pc.or_(pc.match_substring(text, f'"{name}"'), escape())

        for p in self.props:
            column = table.column(p.name).combine_chunks()
            missing = column.is_null()
            if p.required or not p.nullable:
                # Null is valid only for a nullable property that is there, or an optional
                # one that is not: Arrow cannot tell missing from null, the exact check can.
                if p.required and p.nullable and self.closed:
                    # No nested objects here (extra keys are not allowed, properties are
                    # scalars or lists of them): a key followed by a colon is a top-level
                    # key, so a null there is a present null, unless keys use escapes.
                    there = pc.match_substring_regex(text, f'"{p.name}"\\s*:')
                    bad = pc.or_(bad, pc.and_(missing, pc.or_(pc.invert(there), escape())))
                elif p.required:
                    bad = pc.or_(bad, missing)
                else:
                    bad = pc.or_(bad, pc.and_(missing, key_in(p.name)))
            bad = pc.or_(bad, pc.fill_null(_fails(p, column), False))
        if self.closed:
            known = {p.name for p in self.props}
            for extra in (name for name in table.column_names if name not in known):
                if not _NAME.fullmatch(extra):  # spelled in ways a substring would miss
                    return np.zeros(table.num_rows, dtype=bool)
                bad = pc.or_(bad, key_in(extra))
        return ~np.asarray(bad, dtype=bool)


def _nulled(text: pa.Array, rows: np.ndarray) -> pa.Array:
    """``text`` with ``rows`` null: a new validity bitmap over the same offsets and data."""
    valid = np.concatenate([np.zeros(text.offset, dtype=bool), ~rows])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    _, offsets, data = text.buffers()
    return pa.Array.from_buffers(text.type, len(text), [bitmap, offsets, data], offset=text.offset)


def _fails(p: _Prop, column: pa.Array) -> pa.Array:
    """True where a non-null value breaks one of ``p``'s constraints."""
    bad = pa.array(np.zeros(len(column), dtype=bool))
    if p.kind == "number":
        bad = pc.or_(bad, pc.invert(pc.is_finite(column)))
    for function, limit in p.bounds:
        bad = pc.or_(bad, pc.call_function(function, [column, pa.scalar(limit)]))
    low, high = p.lengths
    if low is not None or high is not None:
        size = pc.list_value_length(column) if p.kind == "array" else pc.utf8_length(column)
        if low is not None:
            bad = pc.or_(bad, pc.less(size, low))
        if high is not None:
            bad = pc.or_(bad, pc.greater(size, high))
    if p.enum is not None:
        bad = pc.or_(bad, pc.invert(pc.is_in(column, pa.array(p.enum, pa.large_string()))))
    if p.item is not None and not p.item.nullable:
        items = pc.list_flatten(column)
        parents = np.asarray(pc.list_parent_indices(column))
        holes = np.zeros(len(column), dtype=bool)
        holes[parents[np.asarray(items.is_null(), dtype=bool)]] = True
        bad = pc.or_(bad, pa.array(holes))
    return pc.and_(bad, pc.is_valid(column))  # a null is judged by the caller


# -- compiling a schema -----------------------------------------------------------------------


def bulk_plan(document: dict[str, Any]) -> BulkPlan | None:
    """The Arrow checks of the JSON Schema ``document``; None outside the subset."""
    top = resolve(document, document)
    properties = top.get("properties")
    required = top.get("required", [])
    closed = top.get("additionalProperties", True)
    if (
        set(top) - _ANNOTATIONS - _TOP_KEYS
        or top.get("type", "object") != "object"
        or not isinstance(properties, dict)
        or not isinstance(required, list)
        or not all(isinstance(r, str) and r in properties for r in required)
        or closed not in (True, False, {})
    ):
        return None
    props = []
    for name, node in properties.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return None
        prop = _prop(name, as_dict(node), document)
        if prop is None:
            return None
        props.append(_with(prop, required=name in required))
    return BulkPlan(tuple(props), closed is False)


def _with(prop: _Prop, **changes: Any) -> _Prop:
    return _Prop(**{**prop.__dict__, **changes})


def _is_null(node: Any, root: dict[str, Any]) -> bool:
    node = resolve(as_dict(node), root)
    return set(node) - _ANNOTATIONS == {"type"} and node["type"] == "null"


def _prop(
    name: str, node: dict[str, Any], root: dict[str, Any], scalar: bool = False
) -> _Prop | None:
    """``node``'s checks, or None when it is outside the subset."""
    node = resolve(node, root)
    keys = set(node) - _ANNOTATIONS
    for union in ("anyOf", "oneOf"):
        if union in node:
            branches = node[union]
            if keys != {union} or not isinstance(branches, list) or len(branches) != 2:
                return None
            others = [b for b in branches if not _is_null(b, root)]
            inner = _prop(name, as_dict(others[0]), root, scalar) if len(others) == 1 else None
            # oneOf: a null-allowing branch would match null twice (invalid): not handled.
            return None if inner is None or inner.nullable else _with(inner, nullable=True)
    kind = node.get("type")
    kinds = type_names(node)
    if "type" in node and (
        not kinds or len(kinds) != len(kind if isinstance(kind, list) else [kind])
    ):
        return None
    nullable = "null" in kinds
    real = kinds - {"null"}
    if "enum" in node or "const" in node:
        values = node["enum"] if "enum" in node else [node["const"]]
        if keys - {"type", "enum", "const"} or len(keys & {"enum", "const"}) != 1:
            return None
        if not isinstance(values, list) or real - {"string"}:
            return None
        strings = tuple(v for v in values if v is not None)
        if not strings or not all(isinstance(v, str) for v in strings):
            return None
        # null is valid when the enum lists it and the type (if given) allows it.
        null_ok = None in values and ("type" not in node or nullable)
        return _Prop(name, "string", nullable=null_ok, enum=strings)
    if len(real) != 1:
        return None
    (kind_name,) = real
    if kind_name not in _KEYS or keys - _KEYS[kind_name] or (scalar and kind_name == "array"):
        return None
    bounds = []
    for key, function in _BOUND_KEYS.items():
        if key in node:
            limit = node[key]
            if isinstance(limit, bool) or not isinstance(limit, (int, float)):
                return None
            bounds.append((function, limit))
    lengths: list[int | None] = []
    for key in ("minLength", "maxLength") if kind_name == "string" else ("minItems", "maxItems"):
        limit = node.get(key)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            return None
        lengths.append(limit)
    item = None
    if kind_name == "array":
        item = (
            _prop(name, as_dict(node.get("items")), root, scalar=True) if "items" in node else None
        )
        if item is None or item.bounds or item.enum is not None or item.lengths != (None, None):
            return None  # only an item's type is checked here
    return _Prop(
        name, kind_name, nullable=nullable, bounds=tuple(bounds),
        lengths=(lengths[0], lengths[1]), enum=None, item=item,
    )  # fmt: skip
