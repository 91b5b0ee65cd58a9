"""``doctor``: what this library assumes of a Batch API, checked against the real one.

It resolves the configuration and prints where each setting came from; checks, with short
timeouts and no retry ladder, that the base URL answers, that the key is accepted, and that
files and batches can be listed; with ``live=True`` it runs one tiny batch (``_probe``). Each
assumption ends ``holds``, ``differs`` (and how the library copes) or ``fails`` (what will go
wrong). The whole record is written as JSON for a bug report. The API key is never printed or
recorded (any copy of it is replaced before writing), nor is a presigned URL.
"""

from __future__ import annotations

import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson

from .._errors import ConfigurationError
from ..build._private import private_dir, private_home, write_private
from ..transport._config import resolve_home, resolve_settings
from ..transport._connection import EXPECTED_BASE_URL, probe_batches
from ._findings import DoctorReport, Probe, http_error, json_or_text, sdk_error, shape
from ._probe import run_live

DEFAULT_KEY_ENV = "NETMIND_API_KEY"
_REDACTED = "[REDACTED]"


def doctor(
    *,
    live: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
    api_key_env: str = DEFAULT_KEY_ENV,
    provider: str | None = None,
    local: bool = False,
    timeout: float = 10.0,
    wait: float = 1800.0,
    output: str | Path | None = None,
) -> DoctorReport:
    """Check the configuration and the service against what this library assumes.

    Resolves the settings as every call does (keyword > ``NETMIND_*`` env var > default;
    the key from ``api_key`` or the ``api_key_env`` variable), then checks that the base URL
    answers within ``timeout`` seconds, that the key is accepted, and that files and batches
    can be listed. With ``live=True`` it also runs one batch of one request on the cheapest
    documented model (``max_tokens=1``, a fraction of a cent) through the real upload,
    create, poll and download path, waiting at most ``wait`` seconds, records what the
    service answers at each step, and deletes its files afterwards.

    The full record (never the key, never a presigned URL) is written as JSON to ``output``,
    by default ``NETMIND_FRAMES_HOME/doctor/doctor-<time>.json``: attach it to a bug report.

    Returns:
        A :class:`DoctorReport`: ``str(report)`` is the printed summary, ``report.ok`` is
        False when something the library relies on fails, ``report.path`` is the record.

    Example:
        >>> report = netmind_frames.doctor(live=True)
        >>> print(report)
        >>> report.ok, report.path
    """
    report = DoctorReport()
    report.record.update(_environment(), live=live)
    probe = _connect(report, base_url, api_key, api_key_env, provider, local, timeout)
    if probe is not None:
        try:
            if _basic_checks(report, probe) and live:
                run_live(report, probe, wait=wait)
        finally:
            probe.close()
    # The embedded local server's key ("local") is no secret, and replacing it would mangle
    # every "localhost" in the record.
    secret = "" if local else api_key or os.environ.get(api_key_env) or ""
    report.path = _write(report.record, _record_path(output), secret)
    return report


def _environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("netmind-frames", "openai", "httpx2"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _connect(
    report: DoctorReport,
    base_url: str | None,
    api_key: str | None,
    api_key_env: str,
    provider: str | None,
    local: bool,
    timeout: float,
) -> Probe | None:
    """Resolve and record the configuration; the clients, or None when it is unusable."""
    key = api_key or os.environ.get(api_key_env)
    try:
        settings = resolve_settings(
            api_key=key if not local else None,
            base_url=base_url,
            provider=provider,
            local=local,
        )
    except ConfigurationError:
        if key or local:
            raise  # a bad setting (provider, local with base_url): the caller's error
        report.record["config"] = {"api key present": "no"}
        report.add("api key", "fails", f"no API key: set {api_key_env} (or pass --api-key-env)")
        return None
    report.record["config"] = {
        "base url": settings.base_url,
        "files url": settings.files_url if settings.provider == "netmind" else "(openai client)",
        "provider": settings.provider,
        "home": str(settings.home),
        "api key present": "yes",
        "sources": _sources(base_url, api_key, api_key_env, provider, local),
    }
    client = openai.OpenAI(
        base_url=settings.base_url, api_key=settings.api_key, max_retries=0, timeout=timeout
    )
    # A wrong host answers in seconds: a short connect timeout, no retries.
    http = httpx2.Client(timeout=httpx2.Timeout(timeout, connect=min(timeout, 5.0)))
    return Probe(settings, client, http, timeout)


def _sources(
    base_url: str | None, api_key: str | None, key_env: str, provider: str | None, local: bool
) -> dict[str, str]:
    """Where each setting came from (names of env vars, never their values)."""

    def env_or(keyword: str | None, name: str, default: str) -> str:
        if keyword is not None:
            return "keyword"
        return name if os.environ.get(name) else default

    if local:
        where = {"base url": "local=True", "api key": "local=True"}
    else:
        where = {
            "base url": env_or(base_url, "NETMIND_BASE_URL", "default"),
            "api key": env_or(api_key, key_env, "missing"),
        }
    where["files url"] = env_or(None, "NETMIND_FILES_URL", "derived from the base url")
    where["provider"] = "keyword" if provider else "detected from the base url"
    where["home"] = env_or(None, "NETMIND_FRAMES_HOME", "default")
    return where


def _basic_checks(report: DoctorReport, probe: Probe) -> bool:
    """Reachability, authentication, listing; False when a later check cannot succeed."""
    url = f"{probe.settings.base_url}/batches"
    started = time.monotonic()
    try:
        answer = probe_batches(probe.settings.base_url, probe.settings.api_key, http=probe.http)
    except httpx2.TransportError as exc:
        report.record["reachability"] = {"url": url, "error": type(exc).__name__}
        report.add(
            "reachable",
            "fails",
            f"cannot reach {probe.settings.base_url} ({type(exc).__name__}: {exc}); "
            "check --base-url / NETMIND_BASE_URL",
        )
        return False
    seconds = round(time.monotonic() - started, 3)
    report.record["reachability"] = {"url": url, "status": answer.status_code, "seconds": seconds}
    report.add("reachable", "holds", f"{probe.settings.base_url} answered in {seconds} s")
    if answer.status_code == 404:
        report.record["batches_path"] = http_error(answer)
        report.add(
            "batch api",
            "fails",
            f"GET {url} answered 404: this is no Batch API; expected {EXPECTED_BASE_URL}",
        )
        return False
    if answer.status_code in (401, 403):
        report.record["auth"] = http_error(answer)
        report.add(
            "authentication",
            "fails",
            f"the key was refused (HTTP {answer.status_code}): check the key's value",
        )
        return False
    report.add("authentication", "holds", f"the key was accepted (HTTP {answer.status_code})")
    batches = _list_batches(report, probe)
    files = _list_files(report, probe)
    return batches and files


def _list_batches(report: DoctorReport, probe: Probe) -> bool:
    try:
        page = probe.client.batches.list(limit=1)
    except openai.APIError as exc:
        report.record["batches_list"] = sdk_error(exc)
        report.add("batches list", "fails", f"batches.list failed: {type(exc).__name__}")
        return False
    report.record["batches_list"] = {"count": len(page.data)}
    report.add("batches list", "holds", "batches.list answers OpenAI's page shape")
    return True


def _list_files(report: DoctorReport, probe: Probe) -> bool:
    if probe.settings.provider == "openai":
        try:
            probe.client.files.list()
        except openai.APIError as exc:
            report.record["files_list"] = sdk_error(exc)
            report.add("files list", "fails", f"files.list failed: {type(exc).__name__}")
            return False
        report.add("files list", "holds", "files.list answers OpenAI's page shape")
        return True
    try:
        answer = probe.http.get(probe.settings.files_url, headers=probe.auth)
    except httpx2.TransportError as exc:
        report.add("files list", "fails", f"{probe.settings.files_url}: {type(exc).__name__}")
        return False
    if not answer.is_success:
        report.record["files_list"] = http_error(answer)
        report.add(
            "files list",
            "fails",
            f"{probe.settings.files_url} answered HTTP {answer.status_code}: "
            "set NETMIND_FILES_URL if the File API lives elsewhere",
        )
        return False
    body = json_or_text(answer)
    report.record["files_list"] = {"status": answer.status_code, "shape": shape(body)}
    if isinstance(body, list):
        report.add("files list", "holds", "GET /v1/files answers a bare JSON array")
    else:
        report.add(
            "files list",
            "differs",
            f"GET /v1/files answered {shape(body)}, not a bare array: the library only "
            "uploads and downloads by id, so this does not matter today",
        )
    return True


def _record_path(output: str | Path | None) -> Path:
    if output is not None:
        return Path(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = private_home(resolve_home()) / "doctor"
    private_dir(folder)
    return folder / f"doctor-{stamp}-{secrets.token_hex(3)}.json"


def _write(record: dict[str, Any], path: Path, secret: str) -> Path:
    """Write the record as JSON, any copy of the key replaced (none should be there)."""
    text = orjson.dumps(record, option=orjson.OPT_INDENT_2, default=str).decode()
    if len(secret) >= 8:
        text = text.replace(secret, _REDACTED)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only wherever it goes: the record names the base URL, models and file ids.
    write_private(path, (text + "\n").encode())
    return path
