"""One connection to a Batch API: the openai client for batches, and the provider's file transport."""

from __future__ import annotations

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
        return f"Connection(base_url={self.settings.base_url!r}, provider={self.settings.provider!r})"


def connect(settings: Settings, client: openai.OpenAI | None = None) -> Connection:
    """Build the clients for ``settings``; a caller's own ``client`` is used as it is."""
    if client is None:
        client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key)
    files: FileTransport
    if settings.provider == "netmind":
        files = NetmindFiles(settings.files_url, settings.api_key)
    else:
        files = OpenAIFiles(client)
    return Connection(settings=settings, client=client, files=files)
