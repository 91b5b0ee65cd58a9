"""A deterministic JSON instance for a JSON Schema (the subset structured outputs use).

Covered: ``type`` (one or a list; ``null`` is used only when it is the sole type), ``object``
with ``properties`` (every property is emitted, so ``required`` always holds), ``array`` with
``items`` / ``minItems`` / ``maxItems``, ``string`` (``minLength`` / ``maxLength``), ``number``
and ``integer`` (``minimum`` / ``maximum`` and their exclusive forms), ``boolean``, ``enum``,
``const``, ``anyOf`` / ``oneOf`` / ``allOf`` (the first branch) and local ``$ref``s
(``#/$defs/...``, ``#/definitions/...``). Choices are derived from a hash of the prompt and the
position in the document, so the same prompt always gets the same answer.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

_MAX_DEPTH = 32


def _pick(seed: str, path: str, n: int) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def instance(schema: Any, *, text: str, seed: str) -> Any:
    """Return a JSON value valid against ``schema``, built from ``text`` and ``seed``.

    Parameters
    ----------
    schema:
        The JSON Schema (a dict; anything else yields an empty object).
    text:
        The prompt's text; strings in the answer are taken from it.
    seed:
        Mixed into every choice (enum members, numbers, booleans).

    Example
    -------
    >>> instance({"type": "object", "properties": {"ok": {"type": "boolean"}}}, text="", seed="")
    {'ok': ...}  # doctest: +SKIP
    """
    root = schema if isinstance(schema, dict) else {}
    return _gen(root, root, text, seed, "$", 0)


def _gen(
    s: dict[str, Any], root: dict[str, Any], text: str, seed: str, path: str, depth: int
) -> Any:
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in s and isinstance(s["$ref"], str):
        return _gen(_resolve(s["$ref"], root), root, text, seed, path, depth + 1)
    if "const" in s:
        return s["const"]
    if isinstance(s.get("enum"), list) and s["enum"]:
        return s["enum"][_pick(seed, path, len(s["enum"]))]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = s.get(key)
        if isinstance(branches, list) and branches and isinstance(branches[0], dict):
            merged = {k: v for k, v in s.items() if k != key}
            merged.update(branches[0])
            return _gen(merged, root, text, seed, path, depth + 1)
    kind = s.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if kind is None:
        kind = "object" if "properties" in s else "array" if "items" in s else "string"
    if kind == "object":
        props: dict[str, Any] = s["properties"] if isinstance(s.get("properties"), dict) else {}
        return {
            name: _gen(
                sub if isinstance(sub, dict) else {}, root, text, seed, f"{path}.{name}", depth + 1
            )
            for name, sub in props.items()
        }
    if kind == "array":
        items: dict[str, Any] = s["items"] if isinstance(s.get("items"), dict) else {}
        n = max(int(s.get("minItems", 1)), 1)
        if "maxItems" in s:
            n = min(n, int(s["maxItems"]))
        return [_gen(items, root, text, seed, f"{path}[{i}]", depth + 1) for i in range(n)]
    if kind == "string":
        value = text
        if "maxLength" in s:
            value = value[: int(s["maxLength"])]
        return value.ljust(int(s.get("minLength", 0)), "x")
    if kind in ("number", "integer"):
        return _number(s, kind, _pick(seed, path, 1000))
    if kind == "boolean":
        return _pick(seed, path, 2) == 1
    return None


def _number(s: dict[str, Any], kind: str, r: int) -> int | float:
    lo: float | None = s.get("minimum", s.get("exclusiveMinimum"))
    hi: float | None = s.get("maximum", s.get("exclusiveMaximum"))
    lo_excl = "minimum" not in s and "exclusiveMinimum" in s
    hi_excl = "maximum" not in s and "exclusiveMaximum" in s
    if kind == "integer":
        low = None if lo is None else math.floor(lo) + 1 if lo_excl else math.ceil(lo)
        high = None if hi is None else math.ceil(hi) - 1 if hi_excl else math.floor(hi)
        if low is None and high is None:
            return r
        if low is None:
            assert high is not None
            return high - r % 10
        if high is None or high < low:
            return low + r % 10
        return low + r % (high - low + 1)
    if lo is None and hi is None:
        return r / 10
    if lo is None:
        assert hi is not None
        return float(hi) - 1 - r / 1000
    if hi is None:
        return float(lo) + 1 + r / 1000
    # Strictly inside the interval, which satisfies exclusive bounds too.
    return float(lo) + (float(hi) - float(lo)) * (r + 1) / 1002
