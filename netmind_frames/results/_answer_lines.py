"""One synchronous answer as one line of a batch output file.

Sync mode and the local server's ``upstream`` engine both call a synchronous endpoint per
request and must report what came back exactly as a Batch API would: a line
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}``.
Writing the answers in that shape lets one parser (``_results``) read every mode.

* An HTTP answer keeps its status code and its JSON body (an error keeps the server's error
  envelope); a body that is not a JSON object (an HTML page from a proxy) becomes OpenAI's
  envelope holding the start of the text.
* A request that never got an answer (connection refused or dropped, timed out) gets status
  502 or 504 and an envelope with code ``connection_error`` or ``timeout``, type
  ``server_error``: a failed row that a retry round sends again.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

import orjson

__all__ = ["NO_ANSWER", "answer_line", "error_envelope", "is_success", "no_answer_line"]

#: What a request that got no answer reports: kind -> (status code, error code).
NO_ANSWER: dict[str, tuple[int, str]] = {
    "connection": (502, "connection_error"),
    "timeout": (504, "timeout"),
}
_TEXT_LIMIT = 500


def error_envelope(message: str, *, type: str, code: str | None) -> dict[str, Any]:
    """OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}


def is_success(status_code: int) -> bool:
    """Whether a status code is a success (2xx), as the batch output contract defines it."""
    return 200 <= status_code < 300


def _body(status_code: int, content: bytes) -> dict[str, Any] | None:
    """The JSON object of an answer, or None when the body is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def answer_line(
    custom_id: Any, status_code: int, content: bytes, request_id: str | None = None
) -> bytes:
    """The output line (with its newline) of an HTTP answer: status code and JSON body.

    A 2xx answer whose body is not a JSON object is recorded as a 502 (it cannot be read).

    Example
    -------
    >>> answer_line("7", 400, b'{"error": {"message": "bad", "type": "x", "code": "y"}}')[:30]
    b'{"id":"batch_req_'
    """
    body = _body(status_code, content)
    if body is None:
        if is_success(status_code):
            status_code = 502  # an answer nobody can read is not a success
        text = content[:_TEXT_LIMIT].decode("utf-8", "replace").strip()
        message = f"HTTP {status_code} with a body that is not a JSON object: {text!r}"
        kind = "server_error" if status_code >= 500 else "invalid_request_error"
        body = error_envelope(message, type=kind, code=f"http_{status_code}")
    return _line(custom_id, status_code, body, request_id)


def no_answer_line(custom_id: Any, kind: Literal["connection", "timeout"], message: str) -> bytes:
    """The output line of a request that got no HTTP answer (see :data:`NO_ANSWER`)."""
    status_code, code = NO_ANSWER[kind]
    return _line(custom_id, status_code, error_envelope(message, type="server_error", code=code))


def _line(custom_id: Any, status_code: int, body: Any, request_id: str | None = None) -> bytes:
    line = {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": custom_id,
        "response": {
            "status_code": status_code,
            "request_id": request_id or "req_" + secrets.token_hex(12),
            "body": body,
        },
        "error": None,
    }
    return orjson.dumps(line) + b"\n"
