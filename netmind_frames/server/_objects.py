"""The JSON shapes served to clients: File objects of both dialects and OpenAI's list page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ._envelope import ApiError
from ._store import FileRecord


def file_object(rec: FileRecord) -> dict[str, Any]:
    """OpenAI's File object (batch-api.md §1.2), plus Netmind's ``file_name`` for either client."""
    return {
        "id": rec.id,
        "object": "file",
        "bytes": rec.bytes,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "filename": rec.filename,
        "purpose": rec.purpose,
        "status": "processed",
        "status_details": None,
        "file_name": rec.filename,
    }


def netmind_file(rec: FileRecord) -> dict[str, Any]:
    """Netmind's file entry: ``{id, file_name, purpose, created_at}``."""
    return {
        "id": rec.id,
        "file_name": rec.filename,
        "purpose": rec.purpose,
        "created_at": rec.created_at,
    }


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Read an integer query parameter within ``[low, high]``; 400 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"'{name}' must be an integer between {low} and {high}.", param=name)
    return int(raw)


def page(items: list[dict[str, Any]], *, after: str | None, limit: int) -> dict[str, Any]:
    """Return OpenAI's list envelope over ``items`` (already sorted), after the id ``after``."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }
