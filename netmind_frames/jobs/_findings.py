"""What ``doctor`` found: one finding per assumption, the record, and the clients it used.

Shared by ``_doctor`` (configuration and the quick checks) and ``_probe`` (the live batch).
Answers are described by shape (type and keys), never by value where a value may be a
credential (a presigned URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import orjson

from ..transport._config import Settings

Verdict = Literal["holds", "differs", "fails"]

_BODY_LIMIT = 500


@dataclass(frozen=True)
class Finding:
    """One assumption of the library and what the service did about it."""

    name: str
    verdict: Verdict
    detail: str

    def __str__(self) -> str:
        return f"{self.verdict:<8} {self.name}: {self.detail}"


@dataclass
class DoctorReport:
    """What ``doctor`` found: the findings in order, the full record, where it was written."""

    findings: list[Finding] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when nothing the library relies on fails."""
        return all(f.verdict != "fails" for f in self.findings)

    def add(self, name: str, verdict: Verdict, detail: str) -> Finding:
        """Record one finding (also into the record's ``findings``)."""
        finding = Finding(name, verdict, detail)
        self.findings.append(finding)
        self.record.setdefault("findings", []).append(
            {"name": name, "verdict": verdict, "detail": detail}
        )
        return finding

    def __str__(self) -> str:
        config = self.record.get("config", {})
        lines = [f"{name}: {value}" for name, value in config.items() if name != "sources"]
        sources = config.get("sources", {})
        if sources:
            lines.append("from: " + ", ".join(f"{name} <- {src}" for name, src in sources.items()))
        lines += [str(f) for f in self.findings]
        if self.path is not None:
            lines.append(f"record written to {self.path}")
        return "\n".join(lines)


@dataclass
class Probe:
    """The clients of one doctor run: an openai client and a plain HTTP client, both with
    short timeouts and no retries, and the resolved settings."""

    settings: Settings
    client: openai.OpenAI
    http: httpx2.Client
    timeout: float

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of the File API (never recorded)."""
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    def close(self) -> None:
        """Close both clients."""
        self.client.close()
        self.http.close()


def http_error(answer: httpx2.Response) -> dict[str, Any]:
    """An HTTP answer's status and the start of its body."""
    return {"status": answer.status_code, "body": answer.text[:_BODY_LIMIT]}


def sdk_error(exc: openai.APIError) -> dict[str, Any]:
    """An openai SDK error's class, status and body."""
    status = getattr(exc, "status_code", None)
    return {"error": type(exc).__name__, "status": status, "body": str(exc)[:_BODY_LIMIT]}


def shape(body: object) -> str:
    """Describe an answer by its type and keys only (values may hold signed URLs)."""
    if isinstance(body, dict):
        return f"an object with keys {sorted(body)}"
    return f"a JSON {type(body).__name__}"


def json_or_text(answer: httpx2.Response) -> object:
    try:
        return orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return answer.text[:_BODY_LIMIT]
