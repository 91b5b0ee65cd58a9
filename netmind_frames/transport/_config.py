"""Settings, resolved in one place: keyword argument > ``NETMIND_*`` environment variable > default.

Also decides the provider (``netmind`` or ``openai``) from the base URL, and owns the
process-wide local server that ``local=True`` starts.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .._errors import ConfigurationError

if TYPE_CHECKING:
    import openai

    from ..server import LocalBatchServer

Provider = Literal["netmind", "openai"]

#: Netmind's root (what its own SDK calls ``NETMIND_BASE_URL``); inference and batches sit
#: under ``root + NETMIND_PATH_SUFFIX``, the File API under ``root + /v1/files``.
NETMIND_ROOT = "https://api.netmind.ai"
NETMIND_PATH_SUFFIX = "/inference-api/openai/v1"
DEFAULT_BASE_URL = NETMIND_ROOT + NETMIND_PATH_SUFFIX
DEFAULT_HOME = Path("~/.cache/netmind_frames")

#: The largest input file each provider accepts (batch-api.md §1.4 and §5.2): Netmind says
#: "100 MB"; 100,000,000 bytes is safe whichever megabyte it means.
MAX_BYTES: dict[Provider, int] = {"netmind": 100_000_000, "openai": 200 * 1024 * 1024}
MAX_REQUESTS = 50_000
#: Batches of one job running at once; more shards wait for a slot.
MAX_CONCURRENT_BATCHES = 8

_MISSING_KEY = (
    "No API key: pass api_key=... or set the NETMIND_API_KEY environment variable "
    "(or pass local=True to run on the embedded local batch server, which needs no key)."
)


@dataclass(frozen=True)
class Settings:
    """Everything needed to talk to one Batch API. The key never appears in its repr."""

    base_url: str
    provider: Provider
    files_url: str
    home: Path
    api_key: str = field(repr=False)

    @property
    def max_bytes(self) -> int:
        """The provider's input-file size limit."""
        return MAX_BYTES[self.provider]


def detect_provider(base_url: str) -> Provider:
    """``netmind`` when the base URL's path ends with ``/inference-api/openai/v1``, or when it
    is Netmind's root (host ``api.netmind.ai`` or ``*.netmind.ai``, no ``/inference-api`` path);
    ``openai`` for any other URL."""
    path = urlsplit(base_url).path.rstrip("/")
    if path.endswith(NETMIND_PATH_SUFFIX):
        return "netmind"
    return "netmind" if _is_netmind_host(base_url) and is_root(base_url) else "openai"


def is_root(base_url: str) -> bool:
    """Whether a Netmind URL names the root rather than the inference base: its path has no
    ``/inference-api`` part (``https://api.netmind.ai``, ``https://proxy.example/netmind``)."""
    return "/inference-api" not in urlsplit(base_url).path


def inference_base(base_url: str) -> str:
    """The batches' base URL of a Netmind URL: a root gets ``/inference-api/openai/v1``
    appended, as Netmind's SDK derives it; an inference base stays as it is."""
    base_url = base_url.rstrip("/")
    return base_url + NETMIND_PATH_SUFFIX if is_root(base_url) else base_url


def _is_netmind_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(".netmind.ai")


def netmind_files_url(base_url: str) -> str:
    """Netmind's File API: ``/v1/files`` beside the inference base, not under it.

    The base URL without its ``/inference-api/openai/v1`` suffix, plus ``/v1/files``, as
    Netmind's own SDK builds it (so a proxy's path prefix is kept). A base URL without the
    suffix reaches here only as an ``openai.OpenAI`` client's own base URL with
    ``provider="netmind"`` forced (any other root got the suffix appended first): the
    origin's ``/v1/files``.
    """
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    prefix = path[: -len(NETMIND_PATH_SUFFIX)] if path.endswith(NETMIND_PATH_SUFFIX) else ""
    return f"{parts.scheme}://{parts.netloc}{prefix}/v1/files"


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    provider: str | None = None,
    client: openai.OpenAI | None = None,
    local: bool = False,
) -> Settings:
    """Resolve the connection settings of one call.

    ``client`` and ``local=True`` supply the base URL and the key themselves; otherwise the
    keyword wins over ``NETMIND_BASE_URL`` / ``NETMIND_API_KEY``, which win over the defaults.

    ``base_url`` / ``NETMIND_BASE_URL`` may be Netmind's root, as Netmind's SDK reads
    ``NETMIND_BASE_URL`` (``https://api.netmind.ai``, or a proxy prefix with
    ``provider="netmind"``), or the OpenAI-compatible inference base
    (``https://api.netmind.ai/inference-api/openai/v1``): a Netmind root gets
    ``/inference-api/openai/v1`` appended for the batches, and the File API is always
    ``root + /v1/files`` (``NETMIND_FILES_URL`` overrides it). A client's base URL is used as
    it is.

    Raises:
        ConfigurationError: no API key, an unknown provider, or ``local`` combined with
            another connection setting.
    """
    if local:
        if client is not None or base_url is not None:
            raise ConfigurationError("local=True cannot be combined with client= or base_url=.")
        server = local_server()
        base_url, api_key = server.base_url, server.api_key
    elif client is not None:
        base_url = base_url or str(client.base_url)
        api_key = api_key or client.api_key
    else:
        base_url = base_url or os.environ.get("NETMIND_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key or os.environ.get("NETMIND_API_KEY")
    if not api_key:
        raise ConfigurationError(_MISSING_KEY)
    base_url = check_base_url(base_url.rstrip("/"))
    resolved = _resolve_provider(provider, base_url)
    if resolved == "netmind" and client is None:
        base_url = inference_base(base_url)
    files_url = os.environ.get("NETMIND_FILES_URL") or netmind_files_url(base_url)
    return Settings(
        base_url=base_url,
        provider=resolved,
        files_url=files_url.rstrip("/"),
        home=resolve_home(),
        api_key=api_key,
    )


def check_base_url(base_url: str) -> str:
    """``base_url`` if it has an ``http(s)://`` scheme and a host; ConfigurationError naming
    it (and the likely fix) otherwise, before anything is sent."""
    parts = urlsplit(base_url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return base_url
    if "://" not in base_url:
        raise ConfigurationError(
            f"the base URL {base_url!r} has no scheme: did you mean 'https://{base_url}'?"
        )
    raise ConfigurationError(
        f"the base URL {base_url!r} must start with http:// or https:// and name a host."
    )


def resolve_home() -> Path:
    """The journal and cache folder: ``NETMIND_FRAMES_HOME`` or ``~/.cache/netmind_frames``."""
    return Path(os.environ.get("NETMIND_FRAMES_HOME") or DEFAULT_HOME).expanduser()


def provider_for(provider: str | None = None, base_url: str | None = None) -> Provider:
    """The provider a call would use, without a key or a connection (for ``estimate``):
    ``provider`` if given, else detected from ``base_url`` / ``NETMIND_BASE_URL`` / the default.

    Raises:
        ConfigurationError: an unknown provider.
    """
    url = base_url or os.environ.get("NETMIND_BASE_URL") or DEFAULT_BASE_URL
    return _resolve_provider(provider, url)


def _resolve_provider(provider: str | None, base_url: str) -> Provider:
    if provider is None:
        return detect_provider(base_url)
    if provider not in ("netmind", "openai"):
        raise ConfigurationError(f"provider must be 'netmind' or 'openai', not {provider!r}.")
    return provider  # type: ignore[return-value]


_local_lock = threading.Lock()
_local: LocalBatchServer | None = None


def running_local_base_url() -> str | None:
    """The base URL of this process's ``local=True`` server if it runs, else None."""
    with _local_lock:
        return None if _local is None else _local.base_url


def local_server() -> LocalBatchServer:
    """The process-wide local batch server behind ``local=True``, started on first use."""
    global _local
    with _local_lock:
        if _local is None:
            try:
                from ..server import LocalBatchServer
            except ImportError as exc:  # starlette/uvicorn are the optional extra [local]
                raise ConfigurationError(
                    "local=True needs the local server, the optional extra [local]: from a clone "
                    "of the repository, pip install -e '.[local]'"
                ) from exc
            _local = LocalBatchServer().start()
            atexit.register(_local.stop)
        return _local
