"""Results joined onto an Arrow table, with native types; and that table as a Polars frame.

The Arrow and Polars front ends get the same columns as a pandas caller, typed the way their
users expect rather than as pandas dtypes:

=============================================  =================================================
result column / schema property                Arrow type (Polars type)
=============================================  =================================================
``response``, ``error_code``, ... (text)       ``large_string`` (``String``)
``prompt_tokens``, ``completion_tokens``       ``int64`` (``Int64``), null where missing
``integer`` / ``number`` / ``boolean``         ``int64`` / ``float64`` / ``bool``
``string``                                     ``large_string`` (``String``)
``enum`` of strings (top level)                ``dictionary<int32, large_string>`` holding the
                                               schema's values in order (``Enum``)
``array`` / ``object`` with ``properties``     ``large_list`` / ``struct`` (``List`` / ``Struct``)
anything else (unions, free-form objects)      JSON text, ``large_string``
``embedding``                                  ``fixed_size_list<float32>[d]`` (``Array``)
=============================================  =================================================

Polars is never imported at module level: only :func:`to_polars` needs it, and a Polars
caller has imported it already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from .._errors import ColumnError, InputError
from ._schema import OutputSchema, as_dict, resolve, type_names
from ._structured import typed_frame

__all__ = ["join_table", "native_typed", "to_polars"]

_STR = pa.large_string()
_SCALARS: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "string": _STR,
}


def join_table(
    table: pa.Table,
    results: pa.Table,
    prefix: str = "",
    columns: Sequence[str] = (),
    spec: OutputSchema | None = None,
) -> pa.Table:
    """``table``'s columns, unchanged and in order, then the (prefixed) result ``columns`` and
    the typed columns of ``spec``'s properties. Text is ``large_string``; nothing is a Python
    object."""
    if results.num_rows != table.num_rows:
        raise InputError(f"{results.num_rows} results for a table of {table.num_rows} rows")
    added = {name: _plain(results.column(name)) for name in columns}
    if spec is not None:
        added.update(native_typed(results, spec))
    out = table
    for name, values in added.items():
        if prefix + name in out.column_names:
            raise ColumnError(
                f"result column {prefix + name!r} already exists in the input; pass prefix= "
                "to rename the result columns",
                column=prefix + name,
            )
        out = out.append_column(prefix + name, values)
    return out


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Text as ``large_string``, other result types as they are."""
    kind = column.type
    if pa.types.is_string(kind) or str(kind) == "string_view" or pa.types.is_null(kind):
        return column.cast(_STR)
    return column


def native_typed(results: pa.Table, spec: OutputSchema) -> dict[str, pa.Array]:
    """One Arrow array per top-level property of ``spec``, typed from the schema alone (so
    every chunk, and an all-null column, gets the same type)."""
    frame = typed_frame(results, spec)
    root = spec.schema
    properties = as_dict(resolve(root, root).get("properties"))
    out: dict[str, pa.Array] = {}
    for name in spec.columns:
        column = frame[name]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[name] = _enum(column)
        elif pd.api.types.is_object_dtype(dtype):
            out[name] = _nested(column.tolist(), _arrow_type(as_dict(properties.get(name)), root))
        else:
            values = pa.array(column, from_pandas=True)
            out[name] = values.cast(_STR) if pa.types.is_string(values.type) else values
    return out


def _enum(column: pd.Series) -> pa.Array:
    """A categorical column as an Arrow dictionary array keeping every schema value, in order."""
    codes = np.asarray(column.cat.codes, dtype=np.int32)
    indices = pa.array(codes, pa.int32(), mask=codes < 0)
    dictionary = pa.array([str(c) for c in column.cat.categories], _STR)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _nested(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    """Parsed JSON values as ``kind``; as JSON text when the schema gives no fixed type."""
    if kind is not None:
        try:
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            pass  # an answer the schema allowed but the type cannot hold: keep it as text
    text = [None if v is None else orjson.dumps(v).decode() for v in values]
    return pa.array(text, type=_STR)


def _arrow_type(node: dict[str, Any], root: dict[str, Any]) -> pa.DataType | None:
    """The Arrow type of values valid under ``node``; None when no single type holds them."""
    node = resolve(node, root)
    branches = node.get("anyOf", node.get("oneOf"))
    if isinstance(branches, list):
        real = [b for b in map(as_dict, branches) if type_names(resolve(b, root)) != {"null"}]
        return _arrow_type(real[0], root) if len(real) == 1 else None
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if v is not None]
        return _STR if values and all(isinstance(v, str) for v in values) else None
    if isinstance(node.get("const"), str):
        return _STR
    kinds = type_names(node) - {"null"}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        item = _arrow_type(as_dict(node.get("items")), root)
        return None if item is None else pa.large_list(item)
    properties = node.get("properties")
    if kind == "object" and isinstance(properties, dict) and properties:
        fields = [(str(k), _arrow_type(as_dict(v), root)) for k, v in properties.items()]
        if any(t is None for _, t in fields) or node.get("additionalProperties", True) is not False:
            return None  # unknown keys would be dropped: keep the whole object as JSON text
        return pa.struct([(k, t) for k, t in fields])
    return None


def to_polars(original: Any, joined: pa.Table) -> Any:
    """A Polars DataFrame: ``original``'s columns as they are (not round-tripped through
    Arrow), then the columns ``joined`` adds after them, dictionaries as ``Enum``."""
    import polars as pl  # the caller holds a Polars frame: it is imported already

    added = joined.select(joined.column_names[original.width :])
    result = pl.from_arrow(added)
    assert isinstance(result, pl.DataFrame)
    enums = []
    for field in added.schema:
        if pa.types.is_dictionary(field.type):
            categories = added.column(field.name).combine_chunks().dictionary.to_pylist()
            enums.append(pl.col(field.name).cast(pl.Enum(categories)))
    if enums:
        result = result.with_columns(enums)
    return original.hstack(result.get_columns())
