"""``doctor --live``: one tiny batch through the real path, recording what the service does.

Builds one request on the cheapest documented model (``max_tokens=1``), uploads it with the
provider's file transport, creates a batch, polls it, downloads the output, and compares each
answer with what this library assumes (batch-api.md §5.0, §5.2b). Then it deletes the files.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pandas as pd

from ..build._requests import build_plan
from ..transport._files import FileTransport, NetmindFiles, OpenAIFiles, download_url_from
from ..transport._models import CHEAPEST_BATCH_MODEL
from ._findings import DoctorReport, Probe, http_error, json_or_text, sdk_error, shape

#: OpenAI's batch statuses (batch-api.md §2.3); anything else is an unknown the library
#: treats as still running.
OPENAI_STATUSES = frozenset(
    {
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "failed",
        "expired",
        "cancelling",
        "cancelled",
    }
)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
DOCTOR_KEY = "netmind_frames_doctor"
BAD_FILE_ID = "file-doesnotexist"
_LIST_LIMIT = 100


def run_live(report: DoctorReport, probe: Probe, *, wait: float) -> None:
    """Run the one-request batch and add a finding per assumption it tests."""
    token = secrets.token_hex(8)
    files = _transport(probe)
    live: dict[str, Any] = {"model": CHEAPEST_BATCH_MODEL, "token": token}
    report.record["live"] = live
    created_files: list[str] = []
    try:
        plan = build_plan(
            pd.DataFrame({"text": ["Say OK."]}),
            "{text}",
            model=CHEAPEST_BATCH_MODEL,
            max_bytes=probe.settings.max_bytes,
            params={"max_tokens": 1},
        )
        try:
            file_id = files.upload(plan.shards[0].data, f"netmind_frames-doctor-{token}.jsonl")
        except Exception as exc:  # any failure here is the finding
            live["upload"] = {"error": type(exc).__name__, "message": str(exc)[:500]}
            report.add("upload", "fails", f"the request file could not be uploaded: {exc}")
            return
        created_files.append(file_id)
        live["upload"] = {"file_id": file_id}
        report.add("upload", "holds", f"uploaded the request file as {file_id}")
        batch = _create(report, probe, live, file_id, plan.endpoint, token)
        if batch is None:
            return
        final = _poll(report, probe, live, batch.id, wait)
        if final is None:
            return
        _check_metadata(report, probe, live, final, file_id, token)
        _check_counts(report, live, final)
        for kept in (final.output_file_id, final.error_file_id):
            if kept:
                created_files.append(kept)
        _check_output(report, probe, files, live, final)
        _check_bad_file_id(report, probe, live)
    finally:
        _cleanup(report, probe, live, created_files)
        if isinstance(files, NetmindFiles):
            files.close()


def _transport(probe: Probe) -> FileTransport:
    if probe.settings.provider == "netmind":
        return NetmindFiles(probe.settings.files_url, probe.settings.api_key, timeout=probe.timeout)
    return OpenAIFiles(probe.client)


def _create(
    report: DoctorReport,
    probe: Probe,
    live: dict[str, Any],
    file_id: str,
    endpoint: str,
    token: str,
) -> Any | None:
    try:
        batch = probe.client.batches.create(
            input_file_id=file_id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata={DOCTOR_KEY: token},
        )
    except openai.APIError as exc:
        live["create"] = sdk_error(exc)
        report.add("create", "fails", f"batches.create failed: {type(exc).__name__}: {exc}")
        return None
    live["create"] = batch.model_dump(mode="json")
    if batch.status in OPENAI_STATUSES:
        report.add("create status", "holds", f"create answered status {batch.status!r}")
    else:
        report.add(
            "create status",
            "differs",
            f"create answered status {batch.status!r}, not one of OpenAI's: the library keeps "
            "only the batch id and treats unknown statuses as still running",
        )
    echoed = batch.input_file_id == file_id and batch.endpoint == endpoint
    if echoed:
        report.add("create fields", "holds", "create echoes input_file_id and endpoint")
    else:
        report.add(
            "create fields",
            "differs",
            f"create answered input_file_id={batch.input_file_id!r}, "
            f"endpoint={batch.endpoint!r}: the library reads neither from the create answer",
        )
    return batch


def _poll(
    report: DoctorReport, probe: Probe, live: dict[str, Any], batch_id: str, wait: float
) -> Any | None:
    """Retrieve until terminal; record each status change with its time after create."""
    started = time.monotonic()
    seen: list[dict[str, Any]] = []
    live["statuses"] = seen
    delay = 0.05
    while True:
        try:
            batch = probe.client.batches.retrieve(batch_id)
        except openai.APIError as exc:
            live["retrieve_error"] = sdk_error(exc)
            report.add("retrieve", "fails", f"batches.retrieve failed: {type(exc).__name__}")
            return None
        if not seen or seen[-1]["status"] != batch.status:
            seen.append({"status": batch.status, "after_s": round(time.monotonic() - started, 2)})
        if batch.status in TERMINAL:
            break
        if time.monotonic() - started > wait:
            report.add(
                "finishes",
                "fails",
                f"batch {batch_id} still {batch.status!r} after {wait:.0f} s "
                "(it keeps running; raise --wait to see it finish)",
            )
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    live["final"] = batch.model_dump(mode="json")
    unknown = sorted({s["status"] for s in seen} - OPENAI_STATUSES)
    if unknown:
        report.add(
            "statuses",
            "differs",
            f"statuses outside OpenAI's lifecycle seen: {unknown}; the library counts them "
            "as still running",
        )
    else:
        report.add("statuses", "holds", " -> ".join(s["status"] for s in seen))
    if batch.status != "completed":
        errors = batch.errors.model_dump(mode="json") if batch.errors else None
        live["errors"] = errors
        report.add("finishes", "fails", f"the batch ended {batch.status!r}: {errors}")
        return None
    report.add("finishes", "holds", f"the batch completed in {seen[-1]['after_s']} s")
    return batch


def _check_metadata(
    report: DoctorReport, probe: Probe, live: dict[str, Any], final: Any, file_id: str, token: str
) -> None:
    """Does ``batches.list`` show our metadata, and can it find the batch by its input file?"""
    listed = None
    by_file = False
    try:
        for n, batch in enumerate(probe.client.batches.list(limit=_LIST_LIMIT)):
            if n >= _LIST_LIMIT:
                break
            by_file = by_file or batch.input_file_id == file_id
            if batch.id == final.id:
                listed = batch
    except openai.APIError as exc:
        live["list"] = sdk_error(exc)
    echoed = listed is not None and (listed.metadata or {}).get(DOCTOR_KEY) == token
    live["list"] = {
        "listed": listed is not None,
        "metadata_echoed": echoed,
        "metadata_on_retrieve": (final.metadata or {}).get(DOCTOR_KEY) == token,
        "found_by_input_file_id": by_file,
    }
    if echoed:
        report.add("metadata", "holds", "batches.list echoes the metadata (fingerprint lookup)")
    elif by_file:
        report.add(
            "metadata",
            "differs",
            "metadata not echoed: batches are found by their input file's name instead",
        )
    else:
        report.add(
            "metadata",
            "fails",
            "metadata not echoed: after a lost create answer the library cannot confirm the "
            "batch and stops instead of creating again",
        )
    if by_file:
        report.add("list by input file", "holds", "batches.list finds the batch by input_file_id")
    else:
        report.add(
            "list by input file",
            "differs" if echoed else "fails",
            "batches.list does not show the batch with its input_file_id"
            + (": the fingerprint in metadata finds it instead" if echoed else ""),
        )


def _check_counts(report: DoctorReport, live: dict[str, Any], final: Any) -> None:
    counts = final.request_counts.model_dump(mode="json") if final.request_counts else None
    live["request_counts"] = counts
    if counts and counts.get("total") == 1 and counts.get("completed") == 1:
        report.add("request counts", "holds", f"request_counts {counts}")
    else:
        report.add(
            "request counts",
            "differs",
            f"request_counts {counts}: the library counts rows from the result files instead",
        )


def _check_output(
    report: DoctorReport, probe: Probe, files: FileTransport, live: dict[str, Any], final: Any
) -> None:
    if not final.output_file_id:
        report.add("output", "fails", "the batch completed without an output file")
        return
    if probe.settings.provider == "netmind":
        _check_download_answer(report, probe, live, final.output_file_id)
    else:
        live["download"] = {"route": "GET /files/{id}/content"}
        report.add("download", "holds", "output read through files.content")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = files.download(final.output_file_id, Path(folder) / "output.jsonl")
        except Exception as exc:  # any failure here is the finding
            report.add("output", "fails", f"the output file could not be downloaded: {exc}")
            return
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    live["output_lines"] = lines
    line = lines[0] if len(lines) == 1 else {}
    response = line.get("response") or {}
    body = response.get("body") or {}
    if line.get("custom_id") == "0" and response.get("status_code") == 200 and body.get("choices"):
        report.add("output", "holds", "one output line: custom_id, status 200, choices")
    else:
        report.add(
            "output",
            "fails",
            f"the output is not one OpenAI-shaped line ({len(lines)} lines; first "
            f"{shape(lines[0]) if lines else 'missing'}): the results cannot be read",
        )


def _check_download_answer(
    report: DoctorReport, probe: Probe, live: dict[str, Any], file_id: str
) -> None:
    """The shape of ``GET /v1/files/{id}/presigned_url``: keys only (the URL is a credential)."""
    try:
        answer = probe.http.get(
            f"{probe.settings.files_url}/{file_id}/presigned_url", headers=probe.auth
        )
    except httpx2.TransportError as exc:
        report.add("download", "fails", f"download URL request: {type(exc).__name__}")
        return
    body = json_or_text(answer)
    live["download"] = {"status": answer.status_code, "shape": shape(body)}
    if isinstance(body, dict) and isinstance(body.get("presigned_url"), str):
        report.add("download", "holds", "the download answer has presigned_url")
        return
    try:
        download_url_from(answer)
    except Exception:
        report.add("download", "fails", f"the download answer has no URL: {shape(body)}")
        return
    report.add("download", "differs", f"download answer is {shape(body)}; the library reads it")


def _check_bad_file_id(report: DoctorReport, probe: Probe, live: dict[str, Any]) -> None:
    """What an unknown file id answers (the library takes 400/404 as "the file is gone")."""
    if probe.settings.provider == "netmind":
        try:
            answer = probe.http.get(f"{probe.settings.files_url}/{BAD_FILE_ID}", headers=probe.auth)
        except httpx2.TransportError as exc:
            live["bad_file_id"] = {"error": type(exc).__name__}
            return
        live["bad_file_id"] = http_error(answer)
        status: int | None = answer.status_code
    else:
        try:
            probe.client.files.retrieve(BAD_FILE_ID)
            status = 200
            live["bad_file_id"] = {"status": 200}
        except openai.APIStatusError as exc:
            live["bad_file_id"] = sdk_error(exc)
            status = exc.status_code
    if status in (400, 404):
        report.add("unknown file id", "holds", f"an unknown file id answers HTTP {status}")
    else:
        report.add(
            "unknown file id",
            "differs",
            f"an unknown file id answers HTTP {status}: a job whose uploaded file vanished "
            "stops with that error instead of uploading again",
        )


def _cleanup(report: DoctorReport, probe: Probe, live: dict[str, Any], file_ids: list[str]) -> None:
    if not file_ids:
        return
    results: dict[str, Any] = {}
    for file_id in file_ids:
        try:
            if probe.settings.provider == "netmind":
                answer = probe.http.delete(
                    f"{probe.settings.files_url}/{file_id}", headers=probe.auth
                )
                results[file_id] = answer.status_code
            else:
                probe.client.files.delete(file_id)
                results[file_id] = 200
        except (httpx2.TransportError, openai.APIError) as exc:
            results[file_id] = type(exc).__name__
    live["cleanup"] = results
    left = [f for f, r in results.items() if not (isinstance(r, int) and 200 <= r < 300)]
    if left:
        report.add("cleanup", "differs", f"could not delete {left}: delete them by hand")
    else:
        report.add("cleanup", "holds", f"deleted {len(results)} file(s)")
