"""Netmind's documented batch models: a warning before upload for any other, never an error."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import connection_kwargs, uploaded_files

from netmind_frames import batch_complete
from netmind_frames.transport._models import NETMIND_BATCH_MODELS, closest_batch_model

ROOT = Path(__file__).resolve().parents[1]
TYPO = "meta-llama/Meta-Llama-3.1-8B-Instruc"
FRAME = pd.DataFrame({"text": ["a", "b"]})


def _model_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "netmind_frames" and r.levelno == logging.WARNING and "model" in r.msg
    ]


class _FilesAtWarning(logging.Handler):
    """Lists the server's files at the moment a model warning is logged."""

    def __init__(self, srv) -> None:
        super().__init__(logging.WARNING)
        self.srv, self.files = srv, None

    def emit(self, record: logging.LogRecord) -> None:
        if "model" in record.msg and self.files is None:
            self.files = uploaded_files(self.srv)


def test_a_typo_warns_before_upload_naming_the_closest_documented_model(fresh_server, caplog):
    caplog.set_level(logging.WARNING, logger="netmind_frames")
    spy = _FilesAtWarning(fresh_server)
    logging.getLogger("netmind_frames").addHandler(spy)
    try:
        out = batch_complete(
            FRAME, "{text}", model=TYPO, **connection_kwargs(fresh_server, "netmind")
        )
    finally:
        logging.getLogger("netmind_frames").removeHandler(spy)
    assert (out["status"] == "ok").all()  # a warning, not an error
    assert spy.files == []  # warned before anything was uploaded
    (message,) = _model_warnings(caplog)
    assert repr(TYPO) in message
    assert f"closest: {NETMIND_BATCH_MODELS[0]!r}" in message
    assert all(model in message for model in NETMIND_BATCH_MODELS)


def test_a_documented_model_does_not_warn(server, caplog):
    caplog.set_level(logging.WARNING, logger="netmind_frames")
    out = batch_complete(
        FRAME, "{text}", model=NETMIND_BATCH_MODELS[2], **connection_kwargs(server, "netmind")
    )
    assert (out["status"] == "ok").all()
    assert _model_warnings(caplog) == []


def test_the_openai_dialect_does_not_warn(server, caplog):
    caplog.set_level(logging.WARNING, logger="netmind_frames")
    out = batch_complete(FRAME, "{text}", model=TYPO, **connection_kwargs(server, "openai"))
    assert (out["status"] == "ok").all()
    assert _model_warnings(caplog) == []


def test_model_column_values_are_checked_too(server, caplog):
    caplog.set_level(logging.WARNING, logger="netmind_frames")
    frame = FRAME.assign(model=["google/gemma-2-9b-it", "qwen2.5-7b"])
    out = batch_complete(
        frame, "{text}", model_column="model", **connection_kwargs(server, "netmind")
    )
    assert (out["status"] == "ok").all()  # a warning, not an error
    (message,) = _model_warnings(caplog)
    assert "'qwen2.5-7b'" in message and "closest: 'Qwen/Qwen2.5-7B-Instruct'" in message


def test_model_column_of_a_parquet_file_is_read_for_the_warning(server, caplog, tmp_path):
    from netmind_frames.frames._api import submit_file

    caplog.set_level(logging.WARNING, logger="netmind_frames")
    path = tmp_path / "in.parquet"
    FRAME.assign(model=["gemma-2-27b", None]).to_parquet(path)
    kwargs = connection_kwargs(server, "netmind")
    job = submit_file(path, "{text}", model="google/gemma-2-9b-it", model_column="model", **kwargs)
    job.wait()
    (message,) = _model_warnings(caplog)
    assert "'gemma-2-27b'" in message and "closest: 'google/gemma-2-27b-it'" in message


@pytest.mark.parametrize(
    ("typed", "closest"),
    [
        ("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct"),
        ("google/gemma-2-9b", "google/gemma-2-9b-it"),
        ("META-LLAMA/META-LLAMA-3.1-8B-INSTRUCT", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
    ],
)
def test_closest_documented_model(typed, closest):
    assert closest_batch_model(typed) == closest


def test_the_cli_shows_the_warning(tmp_path):
    source = tmp_path / "in.parquet"
    FRAME.to_parquet(source)
    args = ["complete", str(source), str(tmp_path / "out.parquet"), "--prompt", "{text}"]
    proc = subprocess.run(
        [sys.executable, "-m", "netmind_frames.cli", *args, "--model", TYPO, "--local", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not among the models Netmind documents" in proc.stderr
    assert NETMIND_BATCH_MODELS[0] in proc.stderr
