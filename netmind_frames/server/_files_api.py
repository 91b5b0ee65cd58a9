"""Routes of the File APIs: OpenAI's multipart upload and Netmind's presigned flow, one store.

``POST /v1/files`` tells the dialects apart by content type. ``GET /v1/files`` answers
Netmind's bare array to every client, whatever its headers: Netmind's own SDK sends the openai
SDK's ``X-Stainless-*`` headers and ``OpenAI/`` user agent and still expects the array. OpenAI's
list envelope is answered under OpenAI's own prefix (``GET /openai/v1/files``, see
``_dialect``) and, for callers still on the old ``/v1`` base, when any of OpenAI's list
parameters ``limit``, ``after``, ``order``, ``purpose`` is given (Netmind's SDK sends none).

Netmind's create takes the purposes of its SDK (``fine-tune``, ``batch``, ``inference``,
``code-interpreter``), and its presigned PUT at most ``presigned_max_bytes`` (100 MB).
"""

from __future__ import annotations

import filecmp
import shutil
import time
from pathlib import Path
from typing import IO, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ._context import ctx
from ._dialect import is_openai
from ._envelope import ApiError, JSONResponse, not_found
from ._ids import is_file_id
from ._objects import file_object, int_param, netmind_file, page
from ._presign import PREFIX, sign, verify
from ._store import THIRTY_DAYS, FileRecord

OPENAI_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
#: The purposes of Netmind's SDK (its ``FilePurpose`` enum, batch-api.md §5.2b).
NETMIND_PURPOSES = ("fine-tune", "batch", "inference", "code-interpreter")
_LIST_PARAMS = ("limit", "after", "order", "purpose")


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _file(request: Request) -> FileRecord:
    file_id = request.path_params["file_id"]
    rec = ctx(request).store.get_file(file_id)
    if rec is None:
        raise not_found("File", file_id)
    return rec


class _FileResponse(FileResponse):
    """A file sent in 1 MiB reads: Starlette's 64 KiB cost a worker-thread hop every 64 KiB
    (1,600 for a 100 MB output file), which slowed downloads while the event loop was busy."""

    chunk_size = 1 << 20


def _copy(src: IO[bytes], dest: Path) -> None:
    with dest.open("wb") as fh:
        shutil.copyfileobj(src, fh, 1 << 20)


async def create_file(request: Request) -> Response:
    """``POST /v1/files``: multipart (OpenAI) or JSON ``{file_name, purpose}`` (Netmind)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        return await _openai_upload(request)
    if ctype.startswith("application/json"):
        return await _netmind_create(request)
    raise ApiError(
        400,
        "Send multipart/form-data (OpenAI) or a JSON body {file_name, purpose} (Netmind).",
        param="file",
    )


async def _netmind_create(request: Request) -> Response:
    try:
        body: Any = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.")
    name, purpose = body.get("file_name"), body.get("purpose")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ApiError(400, "'file_name' must be a non-empty string.", param="file_name")
    if purpose not in NETMIND_PURPOSES:
        allowed = ", ".join(f"'{p}'" for p in NETMIND_PURPOSES)
        raise ApiError(400, f"'purpose' must be one of {allowed}.", param="purpose")
    c = ctx(request)
    rec = c.store.add_file(name, purpose, source=None)
    url = sign(c.secret, _origin(request), "put", rec.id, c.presigned_ttl)
    return JSONResponse({"id": rec.id, "presigned_url": url})


def _expires_after(form: Any, created: int) -> int | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at" or not isinstance(seconds, str) or not seconds.isdigit():
        raise ApiError(400, "Invalid 'expires_after'.", param="expires_after")
    if not 3600 <= int(seconds) <= 2_592_000:
        raise ApiError(
            400, "'expires_after.seconds' must be in 3600..2592000.", param="expires_after"
        )
    return created + int(seconds)


async def _openai_upload(request: Request) -> Response:
    store = ctx(request).store
    async with request.form(max_files=1, max_fields=10) as form:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if not isinstance(purpose, str) or purpose not in OPENAI_PURPOSES:
            raise ApiError(400, "Invalid or missing 'purpose'.", param="purpose")
        filename = upload.filename or "upload"
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        rec_created = int(time.time())
        expires = _expires_after(form, rec_created)
        if expires is None and purpose == "batch":
            expires = rec_created + THIRTY_DAYS
        tmp = store.new_tmp_path()
        try:
            await run_in_threadpool(_copy, upload.file, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    rec = store.add_file(filename, purpose, source=tmp, expires_at=expires, created_at=rec_created)
    return JSONResponse(file_object(rec))


def _wants_openai_list(request: Request) -> bool:
    return is_openai(request) or any(name in request.query_params for name in _LIST_PARAMS)


async def list_files(request: Request) -> Response:
    """``GET /v1/files``: OpenAI's list envelope or Netmind's bare array (see module doc)."""
    records = ctx(request).store.list_files()
    if not _wants_openai_list(request):
        return JSONResponse([netmind_file(r) for r in records])
    purpose = request.query_params.get("purpose")
    if purpose is not None:
        records = [r for r in records if r.purpose == purpose]
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "'order' must be 'asc' or 'desc'.", param="order")
    if order == "desc":
        records.reverse()
    after = request.query_params.get("after")
    if after is not None and not is_file_id(after):
        raise ApiError(400, "'after' must be a file id.", param="after")
    limit = int_param(request, "limit", 10_000, 1, 10_000)
    return JSONResponse(page([file_object(r) for r in records], after=after, limit=limit))


async def retrieve_file(request: Request) -> Response:
    """``GET /v1/files/{id}``: the File object (OpenAI fields plus Netmind's ``file_name``)."""
    return JSONResponse(file_object(_file(request)))


async def delete_file(request: Request) -> Response:
    """``DELETE /v1/files/{id}``."""
    rec = _file(request)
    ctx(request).store.delete_file(rec.id)
    return JSONResponse({"id": rec.id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    """``GET /v1/files/{id}/content``: the raw bytes."""
    rec = _file(request)
    return _FileResponse(
        ctx(request).store.data_path(rec.id), media_type="application/octet-stream"
    )


async def presigned_download(request: Request) -> Response:
    """``GET /v1/files/{id}/presigned_url``: ``{"presigned_url": ...}``, a signed download URL."""
    rec = _file(request)
    c = ctx(request)
    return JSONResponse(
        {"presigned_url": sign(c.secret, _origin(request), "get", rec.id, c.presigned_ttl)}
    )


def _check_signature(request: Request, op: str) -> str:
    file_id = request.path_params["file_id"]
    q = request.query_params
    if (
        not is_file_id(file_id)
        or q.get("op") != op
        or not verify(ctx(request).secret, op, file_id, q.get("expires"), q.get("sig"))
    ):
        raise ApiError(
            403, "The signature is invalid or the URL has expired.", code="access_denied"
        )
    return str(file_id)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The file is larger than the {limit:,} byte limit of a batch file (100 MB at Netmind).",
        param="file",
        code="file_too_large",
    )


async def presigned_put(request: Request) -> Response:
    """``PUT /_presigned/{id}?...``: store the raw body as the file's bytes, exactly (at most
    ``presigned_max_bytes``; more gets 413)."""
    file_id = _check_signature(request, "put")
    store = ctx(request).store
    limit = ctx(request).presigned_max_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    tmp = store.new_tmp_path()
    seen = 0
    try:
        with tmp.open("wb", buffering=1 << 20) as fh:  # few large writes, not one per chunk
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > limit:  # a chunked body has no Content-Length to check first
                    raise _too_large(limit)
                fh.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    rec = store.get_file(file_id)
    if rec is not None and rec.uploaded and not filecmp.cmp(tmp, store.data_path(file_id), False):
        # A retried PUT of the same bytes is fine; a replay with other bytes would change a
        # file that a batch may already have read.
        tmp.unlink(missing_ok=True)
        raise ApiError(
            409, "This file was uploaded already; its bytes cannot change.", code="conflict"
        )
    if store.put_file_body(file_id, tmp) is None:
        raise not_found("File", file_id)
    return JSONResponse({})


async def presigned_get(request: Request) -> Response:
    """``GET /_presigned/{id}?...``: the file's raw bytes."""
    file_id = _check_signature(request, "get")
    store = ctx(request).store
    if store.get_file(file_id) is None:
        raise not_found("File", file_id)
    return _FileResponse(store.data_path(file_id), media_type="application/octet-stream")


routes = [
    Route("/v1/files", create_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/v1/files/{file_id}/presigned_url", presigned_download, methods=["GET"]),
    Route(PREFIX + "{file_id}", presigned_put, methods=["PUT"]),
    Route(PREFIX + "{file_id}", presigned_get, methods=["GET"]),
]
