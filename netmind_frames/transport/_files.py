"""File transport: upload request files and download result files, per provider.

Netmind's File API is not OpenAI-shaped (batch-api.md §5.2): a JSON ``POST /v1/files`` returns
an id and a presigned URL, the bytes go up with a ``PUT`` to that URL, and downloads go through
``GET /v1/files/{id}/presigned_url``. OpenAI-compatible providers take a multipart upload and
serve ``GET /files/{id}/content``. Both transports stream uploads from a spool file (a
``Path``; ``bytes`` are taken too) and downloads to disk, so a shard's bytes are never held in
memory whole, and several transfers can run at once from threads (the clients are
thread-safe). Both list the files carrying a name (:meth:`find`), which lets submission
recognise its own uploads.

A presigned URL is a credential of its own: it never appears in a message or a log. One that
answers 403 (expired, or a bad signature) is renewed: a download asks for a fresh URL, an upload
creates a new file (a new id) and puts the bytes there.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Protocol, TypeVar

import httpx2
import openai
import orjson

from .._errors import FileTransferError
from ..build._private import private_file
from ._redact import redact_signed_urls_in_logs

log = logging.getLogger("netmind_frames")

T = TypeVar("T")

#: Statuses worth another try: the request may well succeed a moment later.
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_ATTEMPTS = 8
#: The SDK's errors that its own retries may leave behind on a flaky network.
_TRANSIENT_API = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)
#: How many of the newest files a lookup after a lost upload answer reads.
_FIND_LIMIT = 500
#: How many fresh presigned URLs (or new files) one transfer gets after a 403 before failing.
_RENEWALS = 3


@dataclass(frozen=True)
class RemoteFile:
    """A file the provider lists: its id, and its size and creation time when they are given."""

    id: str
    bytes: int | None = None
    created_at: int | None = None


#: What an upload takes: a file on disk (streamed from it), or the bytes themselves.
Payload = bytes | Path


def payload_size(data: Payload) -> int:
    """The bytes an upload of ``data`` sends."""
    return len(data) if isinstance(data, bytes) else data.stat().st_size


def _opened(data: Payload) -> contextlib.AbstractContextManager[IO[bytes] | bytes]:
    """``data`` as an upload body: an open file (read in chunks as it is sent) or the bytes.

    Opened anew for every attempt, so a retry sends the file from its start.
    """
    if isinstance(data, bytes):
        return contextlib.nullcontext(data)
    return data.open("rb")


class FileTransport(Protocol):
    """What the job needs from a File API."""

    def upload(self, data: Payload, filename: str) -> str:
        """Upload one JSONL file (its path, or its bytes) for ``purpose=batch``; its file id."""
        ...

    def download(self, file_id: str, dest: Path) -> Path:
        """Stream the file's bytes to ``dest`` and return ``dest``."""
        ...

    def delete(self, file_id: str) -> bool:
        """Delete the file on the provider; False when it was gone already."""
        ...

    def find(self, filename: str) -> list[RemoteFile]:
        """The batch files named exactly ``filename``, newest first (a bounded lookup)."""
        ...


class OpenAIFiles:
    """Files through the openai client: multipart upload, streamed ``/files/{id}/content``."""

    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    def upload(
        self, data: Payload, filename: str, sleep: Callable[[float], None] = time.sleep
    ) -> str:
        # Sent without the SDK's blind retries: after a lost answer the file may exist
        # already, so look for it (by its fingerprinted name and size) before sending again.
        client = self._client.with_options(max_retries=0)
        for attempt in range(_ATTEMPTS):
            try:
                # A tuple gives the upload a .jsonl name; OpenAI rejects batch files without one.
                # An open file is streamed by the multipart encoder (a Path would be read whole).
                with _opened(data) as body:
                    created = client.files.create(
                        file=(filename, body, "application/jsonl"), purpose="batch"
                    )
                return created.id
            except openai.RateLimitError:
                pass  # refused: certainly not stored
            except (openai.APIConnectionError, openai.InternalServerError):
                found = self._find(filename, payload_size(data))
                if found is not None:
                    return found
            if attempt == _ATTEMPTS - 1:
                break
            sleep(min(0.5 * 2**attempt, 8.0))
        raise FileTransferError(f"upload of {filename} failed after {_ATTEMPTS} attempts")

    def _find(self, filename: str, size: int) -> str | None:
        """The id of an uploaded batch file with this name and size, among the newest."""
        return next((f.id for f in self.find(filename) if f.bytes == size), None)

    def find(self, filename: str) -> list[RemoteFile]:
        """The batch files named ``filename`` among the newest ``_FIND_LIMIT``, newest first."""

        def look() -> list[RemoteFile]:
            found = []
            try:
                listed = iter(self._client.files.list(purpose="batch"))
            except (openai.NotFoundError, openai.UnprocessableEntityError) as exc:
                return _unlisted(exc)
            for seen, file in enumerate(listed):
                if seen >= _FIND_LIMIT:
                    break
                if file.filename == filename:
                    found.append(RemoteFile(file.id, file.bytes, file.created_at))
            return _newest_first(found)

        # A lookup only reads: try it again rather than upload blindly or give up.
        return _retry(look, f"lookup of {filename}")

    def download(self, file_id: str, dest: Path) -> Path:
        def attempt() -> Path:
            with self._client.files.with_streaming_response.content(file_id) as response:
                response.stream_to_file(private_file(dest))  # results: owner-only
            return dest

        # The SDK retries failed requests, but not a connection dropped mid-body.
        return _retry(attempt, f"download of {file_id}")

    def delete(self, file_id: str) -> bool:
        """``client.files.delete``; False when the file was gone already (404).

        Raises ``FileTransferError`` when it fails (after one retry: deleting is housekeeping,
        and ``netmind-frames files --delete`` can try again later).
        """
        try:
            self._client.with_options(max_retries=_DELETE_ATTEMPTS - 1).files.delete(file_id)
        except openai.NotFoundError:
            return False
        except openai.APIError as exc:
            raise FileTransferError(f"delete of {file_id} failed: {exc}") from exc
        return True


class NetmindFiles:
    """Netmind's File API: JSON create + presigned ``PUT``; download via a presigned URL."""

    def __init__(self, files_url: str, api_key: str, *, timeout: float = 600.0) -> None:
        self._files_url = files_url
        self._auth = {"Authorization": f"Bearer {api_key}"}
        redact_signed_urls_in_logs()
        # Presigned URLs carry their own signature: no Authorization header goes to them.
        self._http = httpx2.Client(timeout=httpx2.Timeout(timeout, connect=10.0))

    def __repr__(self) -> str:
        return f"NetmindFiles(files_url={self._files_url!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def upload(self, data: Payload, filename: str) -> str:
        # Each step is retried on its own. A create whose answer was lost leaves an empty
        # file record behind (harmless: it holds no bytes and is never used); the PUT to
        # the same presigned URL is idempotent.
        def create() -> dict[str, object]:
            created = self._http.post(
                self._files_url,
                json={"file_name": filename, "purpose": "batch"},
                headers=self._auth,
            )
            _raise_for_status(created, "file create")
            body = _json(created, "file create")
            if not isinstance(body, dict) or "id" not in body or "presigned_url" not in body:
                raise FileTransferError(
                    f"Netmind file create answered without id and presigned_url: {_keys(body)}"
                )
            return body

        def put(url: str) -> None:
            # A file is streamed with its Content-Length (presigned storage refuses chunked
            # bodies), so a shard is never held in memory whole.
            with _opened(data) as body:
                answer = self._http.put(url, content=body)
            _raise_if_refused(answer, "upload to the presigned URL")
            _raise_for_status(answer, "upload to the presigned URL")

        for renewal in range(_RENEWALS + 1):
            body = _retry(create, f"file create for {filename}")
            try:
                _retry(partial(put, str(body["presigned_url"])), f"upload of {filename}")
                return str(body["id"])
            except _UrlRefusedError:
                if renewal == _RENEWALS:
                    self._discard(str(body["id"]))
                    raise FileTransferError(
                        f"upload of {filename}: {_RENEWALS + 1} presigned upload URLs in a row "
                        "were refused (HTTP 403: expired or a bad signature)"
                    ) from None
                # The URL of this (still empty) file expired: a new file gets a new URL. Its
                # id is what the caller records, so a batch is created on the file with bytes.
                log.info(
                    "upload URL of file %s was refused (expired?); creating a new file",
                    body["id"],
                )
                self._discard(str(body["id"]))
            except FileTransferError:
                # The bytes never arrived (413, retries spent): drop the empty record, or a
                # later run would find it by its name and create a batch on an empty file
                # (Netmind lists no sizes that would tell it apart).
                self._discard(str(body["id"]))
                raise
        raise AssertionError("unreachable")

    def _discard(self, file_id: str) -> None:
        """Delete an empty file record left by a refused upload; it is only housekeeping."""
        try:
            self.delete(file_id)
        except FileTransferError as exc:
            log.info("could not delete the empty file %s: %s", file_id, exc)

    def download(self, file_id: str, dest: Path) -> Path:
        def presigned_url() -> str:
            where = f"{self._files_url}/{file_id}/presigned_url"
            answer = self._http.get(where, headers=self._auth)
            _raise_for_status(answer, "download URL request")
            return download_url_from(answer)

        def fetch(url: str) -> Path:
            with self._http.stream("GET", url) as response:
                _raise_if_refused(response, "download from the presigned URL")
                _raise_for_status(response, "download from the presigned URL")
                with private_file(dest).open("wb") as out:  # results: owner-only
                    for chunk in response.iter_bytes():  # as they arrive: no re-chunking
                        out.write(chunk)
            return dest

        for renewal in range(_RENEWALS + 1):
            url = _retry(presigned_url, f"download URL of {file_id}")
            try:
                return _retry(partial(fetch, url), f"download of {file_id}")
            except _UrlRefusedError:
                if renewal == _RENEWALS:
                    raise FileTransferError(
                        f"download of {file_id}: {_RENEWALS + 1} fresh presigned URLs in a row "
                        "were refused (HTTP 403: expired or a bad signature)"
                    ) from None
                log.info("download URL of %s was refused (expired?); asking for a new one", file_id)
        raise AssertionError("unreachable")

    def find(self, filename: str) -> list[RemoteFile]:
        """The files named ``filename``, newest first, from one ``GET /v1/files``.

        Netmind answers a bare array of ``{id, file_name, purpose, created_at}`` (batch-api.md
        §5.2b); OpenAI's ``{"data": [...]}`` envelope and its ``filename`` are accepted too.
        """

        def look() -> list[RemoteFile]:
            answer = self._http.get(self._files_url, headers=self._auth)
            if answer.status_code in _NO_LISTING:
                return _unlisted(answer.status_code)
            _raise_for_status(answer, "file list")
            return _named(_json(answer, "file list"), filename)

        return _retry(look, f"lookup of {filename}")

    def delete(self, file_id: str) -> bool:
        """``DELETE {files_url}/{id}`` (its answer's body is unspecified: not read); False
        when the file was gone already (404); ``FileTransferError`` when it fails (after one
        retry: deleting is housekeeping, ``netmind-frames files --delete`` can try again)."""

        for n in range(_DELETE_ATTEMPTS):
            try:
                answer = self._http.delete(f"{self._files_url}/{file_id}", headers=self._auth)
                if answer.status_code == 404:
                    return False
                _raise_for_status(answer, "file delete")
                return True
            except (httpx2.TransportError, _RetryableError) as exc:
                if n == _DELETE_ATTEMPTS - 1:
                    raise FileTransferError(f"delete of {file_id} failed: {exc}") from exc
                time.sleep(0.5)
        raise AssertionError("unreachable")


#: Answers of a provider that cannot list files at all (no such route, method not allowed).
_NO_LISTING = frozenset({404, 405, 501})


def _unlisted(why: object) -> list[RemoteFile]:
    # Without a listing, files cannot be recognised by name: the other channels remain.
    log.info("the provider does not list files (%s); looking by batch metadata only", why)
    return []


def _named(body: object, filename: str) -> list[RemoteFile]:
    """The entries of a file list answer named ``filename`` (newest first)."""
    entries = body.get("data") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise FileTransferError(f"the file list answer is not a list: {_keys(body)}")
    found = []
    for entry in entries:  # one answer (Netmind's list has no documented paging)
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry.get("file_name", entry.get("filename")) != filename:
            continue
        size, created = entry.get("bytes"), entry.get("created_at")
        found.append(
            RemoteFile(
                entry["id"],
                size if isinstance(size, int) else None,
                created if isinstance(created, int) else None,
            )
        )
    return _newest_first(found)


def _newest_first(files: list[RemoteFile]) -> list[RemoteFile]:
    # Stable: files without a time (or with the same second) keep the list's order.
    return sorted(files, key=lambda f: -(f.created_at or 0))


def download_url_from(response: httpx2.Response) -> str:
    """Read the download URL from any of the shapes Netmind may answer (design.md, Providers).

    A JSON object with ``presigned_url`` (what Netmind's own SDK reads: its ``retrieve_url``
    casts the answer to ``{id, presigned_url}``) or ``url``, a JSON string, or the URL as plain
    text.
    """
    text = response.text.strip()
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = text
    if isinstance(body, dict):
        for key in ("presigned_url", "url"):
            if isinstance(body.get(key), str):
                return str(body[key])
        data = body.get("data")
        if isinstance(data, dict):
            for key in ("presigned_url", "url"):
                if isinstance(data.get(key), str):
                    return str(data[key])
    if isinstance(body, str) and body.startswith(("http://", "https://")):
        return body
    raise FileTransferError(f"Netmind's download URL answer has no URL: {_keys(body)}")


class _RetryableError(FileTransferError):
    """A failure that another attempt may not repeat (429, 5xx)."""


class _UrlRefusedError(FileTransferError):
    """A presigned URL answered 403: expired (or its signature is bad); a new one may work."""


def _raise_if_refused(response: httpx2.Response, what: str) -> None:
    if response.status_code != 403:
        return
    if not response.is_closed:
        response.read()
    raise _UrlRefusedError(f"{what} was refused with HTTP 403 (the URL expired?)")


def _raise_for_status(response: httpx2.Response, what: str) -> None:
    if response.is_success:
        return
    if not response.is_closed:
        response.read()
    # Never echo the URL: a presigned URL is a credential of its own.
    message = f"{what} failed with HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code in _RETRYABLE_STATUS:
        raise _RetryableError(message)
    raise FileTransferError(message)


def _retry(attempt: Callable[[], T], what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``attempt`` again on transport errors and retryable statuses, with backoff."""
    for n in range(_ATTEMPTS):
        try:
            return attempt()
        except (httpx2.TransportError, _RetryableError, *_TRANSIENT_API) as exc:
            if n == _ATTEMPTS - 1:
                raise FileTransferError(f"{what} failed after {_ATTEMPTS} attempts: {exc}") from exc
            log.info("%s failed (%s); retrying", what, type(exc).__name__)
            sleep(min(0.5 * 2**n, 8.0))
    raise AssertionError("unreachable")


def _json(response: httpx2.Response, what: str) -> object:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise FileTransferError(f"{what} answered non-JSON: {response.text[:200]!r}") from exc


def _keys(body: object) -> str:
    """Describe an answer without echoing values (they may hold signed URLs)."""
    if isinstance(body, dict):
        return f"an object with keys {sorted(body)}"
    return f"a {type(body).__name__}"


#: Tries of a file deletion (housekeeping: a failure is logged, and can be retried later).
_DELETE_ATTEMPTS = 2
