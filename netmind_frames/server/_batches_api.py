"""Routes of the Batch API and the synchronous chat endpoint, served under both prefixes.

``/inference-api/openai/v1`` is Netmind's dialect; OpenAI's is ``/openai/v1`` (rewritten to
``/v1`` by ``_dialect``) and the old ``/v1``. All see the same batches and files. Under
Netmind's prefix a ``/v1/embeddings`` batch gets 400 "not supported yet", as Netmind's guide
says, unless the server's ``netmind_embeddings`` knob is on; the synchronous
``.../embeddings`` is served under every prefix (Netmind serves it).
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..results._answer_lines import NO_ANSWER, error_envelope
from ._answer import corrupt_seed
from ._context import Context, ctx
from ._dialect import is_netmind_batches
from ._embed import embed_with_input
from ._engine import complete_with_prompt, last_user_text
from ._envelope import ApiError, JSONResponse, not_found
from ._ids import is_batch_id, is_file_id
from ._objects import int_param, page
from ._runner import embed_text
from ._store import StoreError

PREFIXES = ("/v1", "/inference-api/openai/v1")
ENDPOINT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (ENDPOINT, EMBEDDINGS)


def unsupported(endpoint: str, served: frozenset[str]) -> str:
    """The message for an endpoint this server does not serve (Netmind's wording)."""
    listed = ", ".join(sorted(served)) or "none"
    return f"The endpoint {endpoint} is not supported yet (coming soon); supported: {listed}."


def _batch_endpoints(request: Request, c: Context) -> frozenset[str]:
    """The batch endpoints served under the request's prefix."""
    if is_netmind_batches(request) and not c.netmind_embeddings:
        return c.endpoints - {EMBEDDINGS}
    return c.endpoints


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    return body


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    ok = (
        isinstance(value, dict)
        and len(value) <= 16
        and all(isinstance(k, str) and len(k) <= 64 for k in value)
        and all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    )
    if not ok:
        raise ApiError(
            400,
            "'metadata' must map at most 16 string keys (<= 64 chars) to strings (<= 512 chars).",
            param="metadata",
        )
    return dict(value)


def _output_expiry(value: Any) -> int | None:
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or value.get("anchor") != "created_at"
        or not isinstance(seconds, int)
        or not 3600 <= seconds <= 2_592_000
    ):
        raise ApiError(400, "Invalid 'output_expires_after'.", param="output_expires_after")
    return seconds


async def create_batch(request: Request) -> Response:
    """``POST .../batches``: validate the call (400 on bad arguments) and queue the batch."""
    body = await _json_object(request)
    c = ctx(request)
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise ApiError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    rec = c.store.get_file(file_id) if is_file_id(file_id) else None
    if rec is None:
        raise ApiError(
            400, f"Invalid 'input_file_id': {file_id!r}. File not found.", param="input_file_id"
        )
    if rec.purpose != "batch":
        raise ApiError(400, "The input file must have purpose 'batch'.", param="input_file_id")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise ApiError(
            400,
            f"Invalid 'endpoint': the local server supports only {' and '.join(ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    served = _batch_endpoints(request, c)
    if endpoint not in served:
        raise ApiError(400, unsupported(endpoint, served), param="endpoint", code="invalid_value")
    if body.get("completion_window") != "24h":
        raise ApiError(
            400,
            "Invalid 'completion_window': only '24h' is supported.",
            param="completion_window",
            code="invalid_value",
        )
    metadata = _metadata(body.get("metadata"))
    output_expiry = _output_expiry(body.get("output_expires_after"))
    now = time.time()
    deadline = None if c.expire_after is None else now + c.expire_after
    obj: dict[str, Any] = {
        "object": "batch",
        "endpoint": endpoint,
        "model": None,
        "errors": None,
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": int(now),
        "in_progress_at": None,
        "expires_at": None if deadline is None else math.ceil(deadline),
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": metadata,
    }
    created = c.store.add_batch(
        obj, deadline=deadline, seed=c.seed, shuffle=c.shuffle, output_expires_seconds=output_expiry
    )
    c.runner.wake()
    return JSONResponse(c.quirks.created(created))


async def list_batches(request: Request) -> Response:
    """``GET .../batches?limit=&after=``: newest first, OpenAI's list envelope."""
    after = request.query_params.get("after")
    if after is not None and not is_batch_id(after):
        raise ApiError(400, "'after' must be a batch id.", param="after")
    limit = int_param(request, "limit", 20, 1, 100)
    c = ctx(request)
    listed = [c.quirks.listed(obj) for obj in c.store.list_batches()]
    return JSONResponse(page(listed, after=after, limit=limit))


async def retrieve_batch(request: Request) -> Response:
    """``GET .../batches/{id}``."""
    batch_id = request.path_params["batch_id"]
    c = ctx(request)
    obj = c.store.get_batch(batch_id)
    if obj is None:
        raise not_found("Batch", batch_id)
    return JSONResponse(c.quirks.retrieved(obj))


async def cancel_batch(request: Request) -> Response:
    """``POST .../batches/{id}/cancel``: ``cancelling`` now, later ``cancelled``."""
    batch_id = request.path_params["batch_id"]
    c = ctx(request)
    try:
        obj = c.store.request_cancel(batch_id)
    except StoreError as exc:
        raise ApiError(400, str(exc), param="batch_id") from None
    if obj is None:
        raise not_found("Batch", batch_id)
    c.runner.wake()
    return JSONResponse(c.quirks.listed(obj))


async def chat_completions(request: Request) -> Response:
    """``POST .../chat/completions``: answered at once by the echo engine (or forwarded to
    the upstream of a gateway)."""
    c = ctx(request)
    body = await _json_object(request)
    if c.upstream is not None:
        raw = await request.body()
        return await _forward(c, "/chat/completions", raw, last_user_text(body))
    corrupt = corrupt_seed(c.seed, "sync", next(c.sync_calls), c.corrupt_rate)
    status, answer, text = complete_with_prompt(body, corrupt=corrupt)
    if c.sync_log is not None:
        c.sync_log.add("/chat/completions", status, text)
    return JSONResponse(answer, status_code=status)


async def embeddings(request: Request) -> Response:
    """``POST .../embeddings``: answered at once by the echo embedding model, or forwarded
    (404 when the server does not serve ``/v1/embeddings``, as a provider without it)."""
    c = ctx(request)
    if EMBEDDINGS not in c.endpoints:
        raise ApiError(404, unsupported(EMBEDDINGS, c.endpoints), code="unknown_url")
    body = await _json_object(request)
    if c.upstream is not None:
        raw = await request.body()
        return await _forward(c, "/embeddings", raw, embed_text(body))
    status, answer, text = embed_with_input(body)
    if c.sync_log is not None:
        c.sync_log.add("/embeddings", status, text)
    return JSONResponse(answer, status_code=status)


async def _forward(c: Context, path: str, raw: bytes, text: str | None) -> Response:
    """One synchronous call passed to the upstream as it is (the same bytes), without retries
    (the caller's client retries): the upstream's status, body and ``Retry-After`` come back."""
    assert c.upstream is not None
    answer = await run_in_threadpool(c.upstream.post, path, raw, retries=0)
    if answer.failure is not None:
        status, code = NO_ANSWER[answer.failure]
        content = orjson.dumps(
            error_envelope(answer.content.decode(), type="server_error", code=code)
        )
    else:
        assert answer.status is not None
        status, content = answer.status, answer.content
    if c.sync_log is not None:
        c.sync_log.add(path, status, text)
    headers = {} if answer.retry_after is None else {"Retry-After": answer.retry_after}
    return Response(content, status_code=status, media_type="application/json", headers=headers)


routes = [
    route
    for prefix in PREFIXES
    for route in (
        Route(f"{prefix}/batches", create_batch, methods=["POST"]),
        Route(f"{prefix}/batches", list_batches, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}", retrieve_batch, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
        Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]),
        Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
    )
]
