"""One connection to a Batch API: the openai client for batches, the provider's file transport.

Connections are pooled per process (by base URL, files URL, provider and key) so that repeated
calls reuse their HTTP connections, and are closed when the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass

import openai

from ._config import Settings
from ._files import FileTransport, NetmindFiles, OpenAIFiles


@dataclass(frozen=True)
class Connection:
    """The clients a job talks through. Its repr shows the base URL, never the key."""

    settings: Settings
    client: openai.OpenAI
    files: FileTransport

    def __repr__(self) -> str:
        return (
            f"Connection(base_url={self.settings.base_url!r}, provider={self.settings.provider!r})"
        )


_pool_lock = threading.Lock()
_clients: dict[Settings, openai.OpenAI] = {}
_netmind_files: dict[Settings, NetmindFiles] = {}


def connect(settings: Settings, client: openai.OpenAI | None = None) -> Connection:
    """The connection for ``settings``; a caller's own ``client`` is used as it is."""
    with _pool_lock:
        if client is None:
            if settings not in _clients:
                # More retries than the SDK's 2: reads are idempotent, and a 24-hour job
                # should not fail on a few 5xx in a row. (Creates never retry: see _submit.)
                _clients[settings] = openai.OpenAI(
                    base_url=settings.base_url, api_key=settings.api_key, max_retries=6
                )
            client = _clients[settings]
        files: FileTransport = OpenAIFiles(client)
        if settings.provider == "netmind":
            if settings not in _netmind_files:
                _netmind_files[settings] = NetmindFiles(settings.files_url, settings.api_key)
            files = _netmind_files[settings]
    return Connection(settings=settings, client=client, files=files)


@atexit.register
def _close_all() -> None:
    with _pool_lock:
        for files in _netmind_files.values():
            files.close()
        for client in _clients.values():
            client.close()
        _netmind_files.clear()
        _clients.clear()
