"""Checking parsed answers against a schema, all rows at once, with compiled validators.

A JSON Schema dict is checked by jsonschema-rs (Draft 2020-12, compiled once, offline: a
``$ref`` never fetches anything) in one call over the whole list of answers; a pydantic model
by pydantic-core itself (``model_validate_json`` in strict mode, so ``"5"`` is not an integer
and every value that passes fits its column). Both report each failing row with one message
naming the field, in the same words: ``field 'author.name': expected string, got number``,
``field 'stars': required but missing``, ``the answer: expected object, got array``; when a
row has several problems the first is told and the rest counted (``(and 2 more)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jsonschema_rs
import orjson

from .._errors import InputError

#: Takes the parsed answers and their texts (same order); returns {index: message} of failures.
Failures = Callable[[Sequence[Any], Sequence[str]], dict[int, str]]

#: The URI the user's schema is registered under, so that the array wrapper can refer to it
#: while its own ``$ref``s (``#/$defs/...``, ``#``) still resolve within it.
_ANSWER_URI = "urn:netmind-frames:answer"


def schema_failures(document: dict[str, Any]) -> Failures:
    """The bulk check of answers against the JSON Schema ``document``.

    Raises
    ------
    InputError
        ``document`` is not a valid JSON Schema (an unknown ``type``, a bad ``pattern``, a
        ``$ref`` that resolves nowhere): said before anything is sent.
    """
    try:
        jsonschema_rs.meta.validate(document)
    except jsonschema_rs.ValidationError as exc:
        at = "/".join(map(str, exc.instance_path)) or "the top level"
        raise InputError(f"schema is not a valid JSON Schema: at {at}: {exc.message}") from None
    return _SchemaCheck(document)


class _SchemaCheck:
    """A compiled check of answers against one JSON Schema.

    It pickles as its schema document and compiles again when unpickled: Dask and Spark ship
    a job's options to their workers, and a compiled jsonschema-rs validator cannot be pickled.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        try:
            registry = jsonschema_rs.Registry([(_ANSWER_URI, document)])
            # One validator over the list of answers: a single call checks every row, and each
            # error's instance path starts with the row it is about.
            self._validator = jsonschema_rs.validator_for(
                {"type": "array", "items": {"$ref": _ANSWER_URI}}, registry=registry, offline=True
            )
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"schema is not a valid JSON Schema: {first}") from None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_SchemaCheck, (self.document,))

    def __call__(self, docs: Sequence[Any], texts: Sequence[str]) -> dict[int, str]:
        if self._validator.is_valid(docs):  # the common case: one fast pass, no error objects
            return {}
        found: dict[int, list[Any]] = {}
        for error in self._validator.iter_errors(docs):
            found.setdefault(int(error.instance_path[0]), []).append(error)
        return {row: _with_more(_message(errors[0]), len(errors)) for row, errors in found.items()}


def model_failures(model: Any) -> Failures:
    """The check of answers against the pydantic model class ``model`` (never imported here)."""
    validate = model.model_validate_json

    def failures(docs: Sequence[Any], texts: Sequence[str]) -> dict[int, str]:
        out: dict[int, str] = {}
        for row, text in enumerate(texts):
            try:
                validate(text, strict=True)
            except Exception as exc:  # pydantic.ValidationError, without importing pydantic
                out[row] = _model_message(model, exc)
        return out

    return failures


# -- messages ---------------------------------------------------------------------------------


def where(path: str) -> str:
    """How a message names a location: ``field 'a.b'``, or ``the answer`` at the top."""
    return f"field {path!r}" if path else "the answer"


def child(path: str, key: str) -> str:
    """The path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


def _path(parts: Sequence[Any]) -> str:
    path = ""
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else child(path, str(part))
    return path


_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: Any) -> str:
    """The JSON type of a parsed value (orjson and jsonschema-rs give exactly these types)."""
    return _TYPE_NAMES.get(type(value), "object")


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if _json_type(value) != "object" else "{...}"
    return text if len(text) <= 40 else text[:37] + "..."


def _with_more(message: str, count: int) -> str:
    return f"{message} (and {count - 1} more)" if count > 1 else message


_K = jsonschema_rs.ValidationErrorKind

#: Keyword -> how its failure is told, after ``field 'x': `` (value, the kind's data).
_BOUNDS: dict[type, str] = {
    _K.Minimum: "at least",
    _K.Maximum: "at most",
    _K.ExclusiveMinimum: "greater than",
    _K.ExclusiveMaximum: "less than",
}
_SIZES: dict[type, tuple[str, str]] = {
    _K.MinItems: ("at least", "items"),
    _K.MaxItems: ("at most", "items"),
    _K.MinLength: ("at least", "characters"),
    _K.MaxLength: ("at most", "characters"),
}


def _message(error: Any) -> str:
    """One jsonschema-rs error in our words (its instance path starts with the row)."""
    kind, value = error.kind, error.instance
    path = _path(error.instance_path[1:])
    if isinstance(kind, _K.Type):
        return f"{where(path)}: expected {' or '.join(sorted(kind.types))}, got {_json_type(value)}"
    if isinstance(kind, _K.Required):
        return f"{where(child(path, kind.property))}: required but missing"
    if isinstance(kind, _K.AdditionalProperties):
        return f"{where(child(path, kind.unexpected[0]))}: not allowed (no such property)"
    if isinstance(kind, _K.Enum):
        options = kind.options
        listed = ", ".join(map(_shown, options[:10])) + (", ..." if len(options) > 10 else "")
        return f"{where(path)}: {_shown(value)} is not one of {listed}"
    if isinstance(kind, _K.Constant):
        return f"{where(path)}: expected {_shown(kind.expected_value)}, got {_shown(value)}"
    if type(kind) in _BOUNDS:
        return f"{where(path)}: {value!r} is not {_BOUNDS[type(kind)]} {kind.limit!r}"
    if type(kind) in _SIZES:
        what, unit = _SIZES[type(kind)]
        return f"{where(path)}: expected {what} {kind.limit} {unit}, got {len(value)}"
    if isinstance(kind, _K.MultipleOf):
        return f"{where(path)}: {value!r} is not a multiple of {kind.multiple_of!r}"
    if isinstance(kind, _K.Pattern):
        return f"{where(path)}: does not match the pattern {kind.pattern!r}"
    if isinstance(kind, (_K.AnyOf, _K.OneOfNotValid)):
        return _no_branch(kind.name, path, value, kind.context)
    if isinstance(kind, _K.OneOfMultipleValid):
        return f"{where(path)}: matches more than one branch of oneOf, expected one"
    if isinstance(kind, _K.FalseSchema):
        return f"{where(path)}: no value is allowed here"
    return f"{where(path)}: {error.message}"


def _no_branch(keyword: str, path: str, value: Any, context: list[list[Any]]) -> str:
    """``anyOf``/``oneOf`` with no matching branch: one message when the branches agree."""
    firsts = [branch[0] for branch in context if branch]
    inner = list(firsts[0].instance_path[1:]) if firsts else []
    if firsts and all(
        isinstance(e.kind, _K.Type) and list(e.instance_path[1:]) == inner for e in firsts
    ):
        # The usual optional field, {"anyOf": [{"type": "string"}, {"type": "null"}]}.
        names = " or ".join(sorted({name for e in firsts for name in e.kind.types}))
        return f"{where(_path(inner))}: expected {names}, got {_json_type(firsts[0].instance)}"
    distinct = list(dict.fromkeys(_message(e) for e in firsts))
    if len(distinct) == 1:
        return distinct[0]
    return f"{where(path)}: matches no branch of {keyword} ({'; '.join(distinct[:3])})"


def _model_message(model: Any, exc: Exception) -> str:
    """A pydantic ValidationError in our words, naming the field."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        raise exc
    found = errors(include_url=False)
    if not found:
        return f"the answer fails the model {model.__name__}"
    first = found[0]
    path = _path(first.get("loc", ()))
    kind, value = first.get("type", ""), first.get("input")
    if kind in _PYDANTIC_TYPES:
        text = f"{where(path)}: expected {_PYDANTIC_TYPES[kind]}, got {_json_type(value)}"
    elif kind == "missing":
        text = f"{where(path)}: required but missing"
    elif kind == "extra_forbidden":
        text = f"{where(path)}: not allowed (no such property)"
    elif kind == "json_invalid":
        text = f"the answer is not valid JSON: {first.get('msg', 'invalid')}"
    else:
        text = f"{where(path)}: {first.get('msg', 'invalid')}"
    return _with_more(text, len(found))


#: pydantic's error types for a value of the wrong JSON type -> the JSON type expected.
_PYDANTIC_TYPES = {
    "int_type": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "set_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "dataclass_type": "object",
    "none_required": "null",
}
