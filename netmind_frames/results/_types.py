"""The native Arrow type of a schema property: what the Arrow and Polars results hold.

Only the schema decides the type, so every chunk of a job (and an all-null column) gets the
same one. See :mod:`._tables` for the table of types.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ._refs import as_dict, resolve, type_names

__all__ = ["arrow_type"]

STR = pa.large_string()
SCALARS: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "string": STR,
}
#: Deeper nesting than this is taken for a recursive schema.
_DEEPEST = 32


def arrow_type(node: dict[str, Any], root: dict[str, Any], depth: int = 0) -> pa.DataType | None:
    """The Arrow type of values valid under ``node``; None when no single type holds them
    (a recursive schema has none: its values may nest without end).

    A string ``enum`` is ``large_string`` here (the caller makes the top level a dictionary).
    """
    if depth > _DEEPEST:
        return None
    node = resolve(node, root)
    branches = node.get("anyOf", node.get("oneOf"))
    if isinstance(branches, list):
        real = [b for b in map(as_dict, branches) if type_names(resolve(b, root)) != {"null"}]
        return arrow_type(real[0], root, depth + 1) if len(real) == 1 else None
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if v is not None]
        return STR if values and all(isinstance(v, str) for v in values) else None
    if isinstance(node.get("const"), str):
        return STR
    kinds = type_names(node) - {"null"}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind in SCALARS:
        return SCALARS[kind]
    if kind == "array":
        item = arrow_type(as_dict(node.get("items")), root, depth + 1)
        return None if item is None else pa.large_list(item)
    properties = node.get("properties")
    if kind == "object" and isinstance(properties, dict) and properties:
        fields = [(str(k), arrow_type(as_dict(v), root, depth + 1)) for k, v in properties.items()]
        if any(t is None for _, t in fields) or node.get("additionalProperties", True) is not False:
            return None  # unknown keys would be dropped: keep the whole object as JSON text
        return pa.struct([(k, t) for k, t in fields])
    return None
