"""Which dialect a request speaks, told by its path.

Netmind's File API lives at the origin's ``/v1/files`` and its batches under
``/inference-api/openai/v1``. OpenAI's dialect is served under its own prefix, ``/openai/v1``
(:attr:`LocalBatchServer.openai_base_url`), because both dialects' ``GET .../files`` reach the
same path otherwise and must answer differently: Netmind's SDK goes through ``openai.OpenAI``
too (same headers, same user agent) and expects a bare array, the openai SDK a list envelope.

:class:`OpenAIPrefix` maps ``/openai/v1/...`` onto the routes under ``/v1/...`` and marks the
request as OpenAI's, before anything else sees it: faults, the API key check and the routes all
see one path per operation. ``/v1`` alone keeps serving what it served before (multipart
uploads, ``/content``, batches) for callers that still use it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

OPENAI_PREFIX = "/openai/v1"
NETMIND_BATCH_PREFIX = "/inference-api/openai/v1"
_MARK = "netmind_frames.openai_dialect"
_ORIGINAL = "netmind_frames.original_path"


class OpenAIPrefix:
    """Serve the app's ``/v1/...`` routes under ``/openai/v1/...`` too, marked as OpenAI's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the path of an OpenAI-prefixed call, then hand it on."""
        path = scope.get("path", "")
        if scope["type"] == "http" and _under(path, OPENAI_PREFIX):
            rest = path[len(OPENAI_PREFIX) :]
            scope = {**scope, "path": "/v1" + rest, _MARK: True, _ORIGINAL: path}
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_openai(request: Request) -> bool:
    """Whether the request came in under OpenAI's own prefix (``/openai/v1``)."""
    return bool(request.scope.get(_MARK, False))


def is_netmind_batches(request: Request) -> bool:
    """Whether the request came in under Netmind's inference prefix."""
    return _under(request.url.path, NETMIND_BATCH_PREFIX)


def shown_path(request: Request) -> str:
    """The path as the client sent it (before :class:`OpenAIPrefix` rewrote it)."""
    return str(request.scope.get(_ORIGINAL, request.url.path))
