"""Walking a JSON Schema: local ``$ref``s, ``type`` names, schema nodes as dicts."""

from __future__ import annotations

from typing import Any

from .._errors import InputError

__all__ = ["as_dict", "check_refs", "resolve", "type_names"]


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


def check_refs(node: Any, root: dict[str, Any]) -> None:
    """Every ``$ref`` in the schema resolves locally, or a clear error now (not at validation)."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            resolve({"$ref": node["$ref"]}, root)
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                check_refs(value, root)
    elif isinstance(node, list):
        for value in node:
            check_refs(value, root)
