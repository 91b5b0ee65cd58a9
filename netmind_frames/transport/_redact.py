"""Presigned URLs are credentials: keep their signatures out of the HTTP client's logs.

httpx2 logs every request at INFO as ``HTTP Request: PUT <url> ...``, whole URL included. A
presigned upload or download URL carries its signature in the query string, so anyone who can
read a log with INFO on (``--debug``, a notebook's ``logging.basicConfig(level=INFO)``) could use
it until it expires. This filter rewrites such URLs before any handler sees them.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: Query keys (lower case, substrings) that make a URL a credential.
_SECRET_KEYS = ("sig", "signature", "credential", "token", "key")


def redacted_url(url: str) -> str:
    """``url`` with its query replaced by ``<redacted>`` when the query signs or authorises it."""
    parts = urlsplit(url)
    keys = [key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)]
    if not any(secret in key for key in keys for secret in _SECRET_KEYS):
        return url
    return urlunsplit(parts._replace(query="<redacted>"))


class _RedactSignedUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redacted_url(str(arg)) if _looks_like_url(arg) else arg for arg in record.args
            )
        return True


def _looks_like_url(value: object) -> bool:
    text = str(value)
    return text.startswith(("http://", "https://")) and "?" in text


_FILTER = _RedactSignedUrls()


def redact_signed_urls_in_logs() -> None:
    """Install the filter on httpx2's logger (once; idempotent)."""
    logger = logging.getLogger("httpx2")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
