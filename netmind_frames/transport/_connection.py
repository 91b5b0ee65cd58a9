"""One connection to a Batch API: the openai client for batches, the provider's file transport.

Connections are pooled per process (by base URL, files URL, provider and key) so that repeated
calls reuse their HTTP connections, and are closed when the interpreter exits.

The first connection to a base URL in a process is preceded by one quick reachability probe
(:func:`check_reachable`): a wrong host, a closed port or a base URL that is no Batch API fails
in seconds, naming the URL, instead of after the client's patient retry ladder. Once a base
URL has answered, later connection errors get those patient retries (a 24-hour job must
outlast network blips).
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass

import httpx2
import openai

from .._errors import ConfigurationError
from ._config import NETMIND_PATH_SUFFIX, Settings
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
#: Base URLs that answered in this process: no probe before their next connection.
_reached: set[str] = set()

#: Seconds to wait for a TCP connection (and for the probe's answer) on first contact.
PROBE_TIMEOUT = 5.0
#: What a base URL must look like, said when it is unreachable or not a Batch API.
EXPECTED_BASE_URL = (
    "a base URL ending with /v1 (OpenAI-compatible) or with "
    f"{NETMIND_PATH_SUFFIX} (Netmind), or Netmind's root https://api.netmind.ai"
)


def probe_batches(
    base_url: str,
    api_key: str,
    *,
    timeout: float = PROBE_TIMEOUT,
    http: httpx2.Client | None = None,
) -> httpx2.Response:
    """One ``GET {base_url}/batches?limit=1`` with a short connect timeout and no retries.

    Any HTTP answer means the server is reachable (a 401 is a key problem, a 429 or 5xx a
    busy server); ``httpx2.TransportError`` means it is not (or dropped the connection).
    ``http`` is the caller's client (its own timeouts); by default a short-lived one.
    """
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{base_url.rstrip('/')}/batches"
    if http is not None:
        return http.get(url, params={"limit": 1}, headers=headers)
    limits = httpx2.Timeout(timeout, connect=min(timeout, PROBE_TIMEOUT))
    with httpx2.Client(timeout=limits) as own:
        return own.get(url, params={"limit": 1}, headers=headers)


def check_reachable(settings: Settings) -> None:
    """Probe ``settings.base_url`` unless it answered before in this process.

    Raises:
        ConfigurationError: the host cannot be reached or resolved, the port is closed, or
            the server answered 404 for ``/batches`` (it is no Batch API at this path): the
            message names the URL tried, what was expected, and ``netmind-frames doctor``.
    """
    base_url = settings.base_url
    if base_url in _reached:
        return
    try:
        answer = probe_batches(base_url, settings.api_key)
    except (
        httpx2.ConnectError,
        httpx2.ConnectTimeout,
        httpx2.UnsupportedProtocol,
        httpx2.InvalidURL,
    ) as exc:
        raise ConfigurationError(
            f"cannot reach the base URL {base_url} ({type(exc).__name__}: {exc}). Expected "
            f"{EXPECTED_BASE_URL}: check the address (netmind_frames.doctor() checks it)."
        ) from None
    except httpx2.TransportError:
        pass  # connected, then dropped or slow: the server is there; the client retries
    else:
        if answer.status_code == 404:
            raise ConfigurationError(
                f"the base URL {base_url} is not a Batch API: GET {base_url}/batches "
                f"answered 404. Expected {EXPECTED_BASE_URL} (netmind_frames.doctor() checks it)."
            )
    _reached.add(base_url)


def connect(settings: Settings, client: openai.OpenAI | None = None) -> Connection:
    """The connection for ``settings``; a caller's own ``client`` is used as it is.

    Without ``client``, the first connection to a base URL in a process probes it first
    (:func:`check_reachable`); a caller's own client keeps its own timeouts and retries.
    """
    if client is None:
        check_reachable(settings)
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
