"""Validation of a batch input file: the checks that make a batch end ``failed``.

Error codes (``errors.data[].code``), each with the 1-based ``line`` it concerns:
``invalid_json_line`` (not a JSON object), ``missing_custom_id`` (absent, empty or not a
string), ``duplicate_custom_id``, ``invalid_method`` (``method`` other than ``POST``),
``url_mismatch`` (``url`` is not the batch's endpoint), ``model_mismatch`` (a second model in
the file) and ``empty_file`` (no request line; ``line`` null). Blank lines are skipped. A line
whose ``body`` is not a valid request is *not* a validation error: it runs and gets a 400
error line, as at OpenAI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_ERRORS = 1000


@dataclass(frozen=True)
class Validated:
    """The request lines of a valid file (blank lines dropped), or the errors of an invalid one."""

    lines: list[bytes]
    model: str | None
    errors: list[dict[str, Any]]


def _error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def validate_input(data: bytes, endpoint: str) -> Validated:
    """Check every line of ``data`` against the batch's ``endpoint``."""
    lines: list[bytes] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(errors) >= MAX_ERRORS:
            break
        lines.append(raw)
        try:
            req = orjson.loads(raw)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            errors.append(
                _error("invalid_json_line", "This line is not parseable as valid JSON.", number)
            )
            continue
        cid = req.get("custom_id")
        if not isinstance(cid, str) or not cid:
            errors.append(_error("missing_custom_id", "This line has no custom_id.", number))
        elif cid in seen:
            errors.append(
                _error(
                    "duplicate_custom_id", "The custom_id for this request is a duplicate.", number
                )
            )
        else:
            seen.add(cid)
        if req.get("method", "POST") != "POST":
            errors.append(_error("invalid_method", "Only the POST method is supported.", number))
        if req.get("url") != endpoint:
            errors.append(
                _error(
                    "url_mismatch",
                    f"The url for this request does not match the batch endpoint {endpoint}.",
                    number,
                )
            )
        body = req.get("body")
        line_model = body.get("model") if isinstance(body, dict) else None
        if isinstance(line_model, str):
            if model is None:
                model = line_model
            elif line_model != model:
                errors.append(
                    _error(
                        "model_mismatch",
                        f"All requests must use the same model; this line uses {line_model!r}, "
                        f"earlier lines {model!r}.",
                        number,
                    )
                )
    if not lines:
        errors.append(_error("empty_file", "The input file contains no requests.", None))
    return Validated(lines=lines if not errors else [], model=model, errors=errors)
