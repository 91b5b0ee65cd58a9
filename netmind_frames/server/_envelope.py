"""OpenAI's error envelope, the exception that carries it, and an orjson JSON response."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Build ``{"error": {"message", "type", "param", "code"}}``, OpenAI's error envelope."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class ApiError(Exception):
    """An HTTP error answered with OpenAI's error envelope; raised by routes and middleware."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = error_body(message, type=type, param=param, code=code)
        self.headers = headers or {}

    def response(self) -> Response:
        """Render the error as a JSON response."""
        return JSONResponse(self.body, status_code=self.status_code, headers=self.headers)


def not_found(kind: str, object_id: str) -> ApiError:
    """Return the 404 OpenAI answers for an unknown object id."""
    return ApiError(404, f"No such {kind} object: {object_id}", param="id")


class JSONResponse(Response):
    """A JSON response serialised with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialise ``content`` with orjson."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
