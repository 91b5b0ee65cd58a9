"""A compiled JSON Schema validator for the subset structured outputs use.

:func:`compile_schema` turns a schema into nested closures once, so checking each answer never
re-reads the schema. A check returns None when the value is valid, else a message naming the
field (``field 'author.name': expected string, got number``).

Coverage: ``type`` (one or a list, ``null`` included; ``integer`` accepts ``2.0``),
``properties``, ``required``, ``additionalProperties`` (``false`` or a schema), ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``, ``oneOf`` (exactly
one branch), ``allOf``, local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, recursive
models included), ``minimum``/``maximum`` and their exclusive forms, ``multipleOf``,
``minLength``/``maxLength``, ``pattern``. Other keywords are accepted and not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from .._errors import InputError

#: A check returns None when the value is valid, else a message.
Check = Callable[[Any, str], "str | None"]


def compile_schema(document: dict[str, Any]) -> Check:
    """A check for ``document`` (a JSON Schema whose local ``$ref``s resolve within it)."""
    return _Compiler(document).compile(document)


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


def where(path: str) -> str:
    """How a message names a location: ``field 'a.b'``, or ``the answer`` at the top."""
    return f"field {path!r}" if path else "the answer"


def child(path: str, key: str) -> str:
    """The path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "array": (list,),
    "object": (dict,),
}


def _json_type(value: Any) -> str:
    """The JSON type of a parsed value (orjson gives exactly these Python types)."""
    return _TYPE_NAMES.get(type(value), "object")


def _is_type(value: Any, kind: str) -> bool:
    if type(value) in _PY_TYPES.get(kind, ()):
        return True
    return kind == "integer" and type(value) is float and value.is_integer()


def _enum_kind(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value), "object")
    return "number" if kind == "integer" else kind


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if _json_type(value) != "object" else "{...}"
    return text if len(text) <= 40 else text[:37] + "..."


class _Compiler:
    """Compile a JSON Schema into nested closures: checks run without re-reading the schema."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, node: Any) -> Check:
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

    def _parts(self, node: dict[str, Any]) -> list[Check | None]:
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

    def _ref(self, ref: Any) -> Check | None:
        if not isinstance(ref, str):
            return None
        target = resolve({"$ref": ref}, self.root)  # raises on a bad ref, at compile time

        def check(value: Any, path: str) -> str | None:
            compiled = self.refs.get(ref)
            if compiled is None:  # compiled on first use: recursive models terminate
                compiled = self.refs[ref] = self.compile(target)
            return compiled(value, path)

        return check

    def _type(self, node: dict[str, Any]) -> Check | None:
        kinds = sorted(type_names(node))
        if not kinds:
            return None
        expected = " or ".join(kinds)
        allowed = frozenset(t for k in kinds for t in _PY_TYPES.get(k, ()))
        whole_floats = "integer" in kinds and "number" not in kinds

        def check(value: Any, path: str) -> str | None:
            kind = type(value)
            if kind in allowed or (whole_floats and kind is float and value.is_integer()):
                return None
            return f"{where(path)}: expected {expected}, got {_json_type(value)}"

        return check

    def _enum(self, node: dict[str, Any]) -> Check | None:
        if "const" in node:
            const = node["const"]

            def check_const(value: Any, path: str) -> str | None:
                if value == const and _json_type(value) == _json_type(const):
                    return None
                return f"{where(path)}: expected {_shown(const)}, got {_shown(value)}"

            return check_const
        enum = node.get("enum")
        if not isinstance(enum, list):
            return None
        # Keyed by JSON type too: true is not 1, "1" is not 1; 1 and 1.0 are both numbers.
        hashable = {(_enum_kind(v), v) for v in enum if not isinstance(v, (list, dict))}
        listed = ", ".join(_shown(v) for v in enum[:10]) + (", ..." if len(enum) > 10 else "")

        def check_enum(value: Any, path: str) -> str | None:
            if isinstance(value, (list, dict)):
                if value in enum:
                    return None
            elif (_enum_kind(value), value) in hashable:
                return None
            return f"{where(path)}: {_shown(value)} is not one of {listed}"

        return check_enum

    def _branches(self, node: dict[str, Any]) -> Check | None:
        checks: list[Check] = []
        for key in ("anyOf", "oneOf", "allOf"):
            branches = node.get(key)
            if isinstance(branches, list) and branches:
                checks.append(self._combine(key, [self.compile(b) for b in branches]))
        if not checks:
            return None
        return checks[0] if len(checks) == 1 else self.compile_list(checks)

    @staticmethod
    def compile_list(checks: list[Check]) -> Check:
        def check(value: Any, path: str) -> str | None:
            for c in checks:
                error = c(value, path)
                if error is not None:
                    return error
            return None

        return check

    @staticmethod
    def _combine(key: str, branches: list[Check]) -> Check:
        if key == "allOf":
            return _Compiler.compile_list(branches)

        def check(value: Any, path: str) -> str | None:
            errors = [b(value, path) for b in branches]
            matched = sum(e is None for e in errors)
            if matched == 1 or (matched and key == "anyOf"):
                return None
            if matched:
                return f"{where(path)}: matches {matched} branches of oneOf, expected one"
            distinct = list(dict.fromkeys(e for e in errors if e is not None))
            if len(distinct) == 1:
                return distinct[0]
            return f"{where(path)}: matches no branch of {key} ({'; '.join(distinct[:3])})"

        return check

    def _object(self, node: dict[str, Any]) -> Check | None:
        props = node.get("properties")
        props = {k: self.compile(v) for k, v in props.items()} if isinstance(props, dict) else {}
        required = [r for r in node.get("required", []) if isinstance(r, str)]
        extra = node.get("additionalProperties", True)
        extra_check = None if extra is True or extra is False else self.compile(extra)
        if not props and not required and extra is True:
            return None
        required_set = set(required)
        items = [(name, sub, name in required_set) for name, sub in props.items()]
        others = [name for name in required if name not in props]
        known = props.keys()

        def check(value: Any, path: str) -> str | None:
            if not isinstance(value, dict):
                return None
            for name, sub, needed in items:  # in schema order: the first problem is reported
                if name in value:
                    error = sub(value[name], child(path, name))
                    if error is not None:
                        return error
                elif needed:
                    return f"{where(child(path, name))}: required but missing"
            for name in others:
                if name not in value:
                    return f"{where(child(path, name))}: required but missing"
            if extra is not True:
                for name in value.keys() - known:
                    if extra_check is None:
                        return f"{where(child(path, name))}: not allowed (no such property)"
                    error = extra_check(value[name], child(path, name))
                    if error is not None:
                        return error
            return None

        return check

    def _array(self, node: dict[str, Any]) -> Check | None:
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
                return f"{where(path)}: expected at least {low} items, got {len(value)}"
            if high is not None and len(value) > high:
                return f"{where(path)}: expected at most {high} items, got {len(value)}"
            for i, item in enumerate(value):
                sub = prefix_checks[i] if i < len(prefix_checks) else items
                if sub is not None:
                    error = sub(item, f"{path}[{i}]")
                    if error is not None:
                        return error
            return None

        return check

    def _number(self, node: dict[str, Any]) -> Check | None:
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
            if type(value) is not int and type(value) is not float:
                return None
            for bound, ok, what in tests:
                if not ok(value, bound):
                    return f"{where(path)}: {value!r} is not {what} {bound!r}"
            if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
                return f"{where(path)}: {value!r} is not a multiple of {step!r}"
            return None

        return check

    def _string(self, node: dict[str, Any]) -> Check | None:
        low, high = node.get("minLength"), node.get("maxLength")
        pattern = re.compile(node["pattern"]) if isinstance(node.get("pattern"), str) else None
        if low is None and high is None and pattern is None:
            return None

        def check(value: Any, path: str) -> str | None:
            if not isinstance(value, str):
                return None
            if low is not None and len(value) < low:
                return f"{where(path)}: expected at least {low} characters, got {len(value)}"
            if high is not None and len(value) > high:
                return f"{where(path)}: expected at most {high} characters, got {len(value)}"
            if pattern is not None and pattern.search(value) is None:
                return f"{where(path)}: does not match the pattern {pattern.pattern!r}"
            return None

        return check


def _always(value: Any, path: str) -> str | None:
    return None


def _never(value: Any, path: str) -> str | None:
    return f"{where(path)}: no value is allowed here"
