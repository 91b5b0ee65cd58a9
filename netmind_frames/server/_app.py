"""The ASGI application: both dialects' routes, OpenAI-style errors, the gate in front.

Outermost is :class:`~._dialect.OpenAIPrefix`, which serves OpenAI's dialect under
``/openai/v1`` (see ``_dialect``); then the :class:`Gate`; then the routes.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from . import _batches_api, _files_api
from ._context import Context
from ._dialect import OpenAIPrefix, shown_path
from ._envelope import ApiError
from ._gate import Gate
from ._hooks import FaultScript


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {shown_path(request)}."
        return ApiError(404, message, code="unknown_url").response()
    return ApiError(exc.status_code, str(exc.detail)).response()


def build_app(
    context: Context,
    *,
    api_key: str | None,
    fault_rate: float,
    seed: int,
    max_body_bytes: int,
    script: FaultScript | None = None,
) -> ASGIApp:
    """Return the server's ASGI app over ``context``, wrapped in the :class:`Gate` and the
    OpenAI prefix."""
    app = Starlette(
        routes=[*_files_api.routes, *_batches_api.routes],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    app.state.ctx = context
    gated = Gate(
        app,
        api_key=api_key,
        fault_rate=fault_rate,
        seed=seed,
        max_body_bytes=max_body_bytes,
        script=script,
    )
    return OpenAIPrefix(gated)
