"""Presigned URLs: expiring, HMAC-signed links to upload (PUT) or download (GET) one file.

A URL reads ``/_presigned/<file id>?op=put|get&expires=<unix s>&sig=<hex>``; the signature
covers the operation, the file id and the expiry, so a changed field or an expired URL gets
403. The secret lives in ``<data_dir>/presign.key`` so URLs outlive a restart.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlencode

PREFIX = "/_presigned/"


def load_secret(root: Path) -> bytes:
    """Return the signing secret kept under ``root``, creating it (mode 0600) if missing."""
    path = root / "presign.key"
    if path.exists():
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret


def _signature(secret: bytes, op: str, file_id: str, expires: int) -> str:
    return hmac.new(secret, f"{op}\n{file_id}\n{expires}".encode(), sha256).hexdigest()


def sign(secret: bytes, origin: str, op: str, file_id: str, ttl: float) -> str:
    """Return an absolute presigned URL for ``op`` (``put`` or ``get``) on ``file_id``."""
    expires = int(time.time() + ttl)
    query = urlencode(
        {"op": op, "expires": expires, "sig": _signature(secret, op, file_id, expires)}
    )
    return f"{origin.rstrip('/')}{PREFIX}{file_id}?{query}"


def verify(secret: bytes, op: str, file_id: str, expires: str | None, sig: str | None) -> bool:
    """Tell whether a presigned request is genuine and not expired."""
    if expires is None or sig is None or not expires.isdigit() or len(expires) > 12:
        return False
    expected = _signature(secret, op, file_id, int(expires)).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "replace")):
        return False
    return time.time() < int(expires)
