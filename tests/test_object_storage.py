"""Tables in object storage: S3 through moto's real S3 HTTP server on loopback, Parquet
datasets (hive-partitioned) in and out, against the local batch server in both dialects."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import connection_kwargs, uploaded_files

import netmind_frames
from netmind_frames import InputError, LocalBatchServer
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from netmind_frames.results import _sink

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

#: The secret key of every S3 call: no log, journal, file or error may ever show it.
SECRET = "moto-SECRET-never-in-a-log-7f3a9c"
REGIONS = ("eu", "us")
ROWS_PER_FILE = 9  # 2 regions x 2 files x 9 rows = 36 rows, windows of 12 across files
_BUCKETS = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A new bucket for one test, credentials in the environment (as a user's would be)."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    fs = s3fs.S3FileSystem()
    bucket = f"bucket-{next(_BUCKETS)}"
    fs.mkdir(bucket)
    fs.bucket = bucket  # type: ignore[attr-defined]
    return fs


def rows() -> pd.DataFrame:
    """The rows of the dataset, in the order it is read (partition directories sorted)."""
    parts = []
    for region in REGIONS:
        for file in range(2):
            n = [f"{region}-{file}-{i}" for i in range(ROWS_PER_FILE)]
            parts.append(pd.DataFrame({"id": n, "text": [f"say {x}" for x in n], "region": region}))
    return pd.concat(parts, ignore_index=True)


def put_dataset(fs: Any, prefix: str) -> None:
    """The rows as a hive-partitioned dataset: region=eu/part-0.parquet ... (no region column
    in the files: it comes back from the directory names)."""
    frame = rows()
    for region in REGIONS:
        for file in range(2):
            start = (REGIONS.index(region) * 2 + file) * ROWS_PER_FILE
            part = frame.iloc[start : start + ROWS_PER_FILE][["id", "text"]]
            table = pa.Table.from_pandas(part, preserve_index=False)
            with fs.open(f"{prefix}/region={region}/part-{file}.parquet", "wb") as f:
                pq.write_table(table, f, row_group_size=4)


def complete(inp: str, out: str, srv: LocalBatchServer, dialect: str, *extra: str) -> list[str]:
    base_url = srv.base_url if dialect == "netmind" else srv.openai_base_url
    return [
        "complete", inp, out, "--prompt", "{text}", "--model", "m", "--window", "12",
        "--max-requests", "12", "--base-url", base_url, "--poll-interval", "0.05", "--quiet",
        *extra,
    ]  # fmt: skip


def read_s3(fs: Any, path: str) -> pd.DataFrame:
    return pq.read_table(path, filesystem=fs).to_pandas()


def test_a_partitioned_s3_dataset_in_gives_the_local_files_answers_out(
    s3, server, dialect, tmp_path, monkeypatch
):
    """Read from S3 in windows smaller than the dataset, written as one file and as a
    dataset: the same rows, order and answers as the same rows from a local file."""
    monkeypatch.setenv("NETMIND_API_KEY", server.api_key)
    b = s3.bucket
    put_dataset(s3, f"{b}/in")
    local_in, local_out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    rows().to_parquet(local_in, index=False)
    assert main(complete(str(local_in), str(local_out), server, dialect)) == EXIT_OK
    expected = pd.read_parquet(local_out)
    assert list(expected["response"]) == list(rows()["text"])

    assert main(complete(f"s3://{b}/in/", f"s3://{b}/out.parquet", server, dialect)) == EXIT_OK
    pd.testing.assert_frame_equal(read_s3(s3, f"{b}/out.parquet"), expected)

    assert main(complete(f"s3://{b}/in", f"s3://{b}/outds", server, dialect, "--dataset")) == 0
    parts = sorted(s3.ls(f"{b}/outds", detail=False))
    assert [p.rsplit("/", 1)[1] for p in parts] == [
        "_SUCCESS", *[f"part-{i:05d}.parquet" for i in range(3)]  # 36 rows / window 12
    ]  # fmt: skip
    back = ds.dataset(f"{b}/outds", filesystem=s3, format="parquet").to_table().to_pandas()
    pd.testing.assert_frame_equal(back, expected)
    assert not [p for p in s3.ls(b, detail=False) if ".tmp" in p]  # no temporary left


def test_python_storage_options_and_the_secret_never_shows(
    s3, s3_endpoint, server, tmp_path, monkeypatch, caplog
):
    """batch_complete_file with storage_options only (no AWS_* variables): the journal,
    every file of the home, the debug logs and the errors never hold the secret key."""
    caplog.set_level(logging.DEBUG)
    b = s3.bucket
    put_dataset(s3, f"{b}/in")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    options = {"key": "moto-access-key", "secret": SECRET, "endpoint_url": s3_endpoint}
    counts = netmind_frames.batch_complete_file(
        f"s3://{b}/in",
        f"s3://{b}/answers",
        "{text}",
        dataset=True,
        storage_options=options,
        model="m",
        chunk_rows=10,
        **connection_kwargs(server, "openai"),
    )
    assert counts == {"ok": 36}
    back = pq.read_table(f"{b}/answers", filesystem=s3).to_pandas()
    assert list(back["response"]) == list(rows()["text"])
    assert list(back["region"]) == list(rows()["region"])  # the partition key, a column again

    with pytest.raises(InputError) as bad:  # a missing bucket: before anything is sent
        netmind_frames.batch_complete_file(
            f"s3://{b}/in", "s3://no-such-bucket/x.parquet", "{text}",
            storage_options=options, model="m", **connection_kwargs(server, "openai"),
        )  # fmt: skip
    assert "output='s3://no-such-bucket/x.parquet'" in str(bad.value)
    home = Path(netmind_frames_home())
    stored = [p for p in home.rglob("*") if p.is_file()]
    assert stored  # the journal is there, and holds the URL, never the key
    assert any(f"s3://{b}/in".encode() in p.read_bytes() for p in stored)
    for p in stored:
        assert SECRET.encode() not in p.read_bytes(), p
    assert SECRET not in caplog.text
    assert SECRET not in str(bad.value) and SECRET not in repr(bad.value)


def netmind_frames_home() -> str:
    from netmind_frames.transport._config import resolve_home

    return str(resolve_home())


def test_a_failed_write_leaves_no_out_and_result_writes_it_without_paying_again(
    s3, fresh_server, monkeypatch, capsys
):
    """The third part file fails to upload: no OUT, no temporary prefix, a hint; then
    `netmind-frames result JOB` (the job's input a URL in the journal) writes OUT, no new batch."""
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    b = s3.bucket
    put_dataset(s3, f"{b}/in")
    real_write = _sink.ParquetSink.write
    calls = []

    def flaky(self: _sink.ParquetSink, table: pa.Table) -> None:
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        real_write(self, table)

    monkeypatch.setattr(_sink.ParquetSink, "write", flaky)
    args = complete(f"s3://{b}/in", f"s3://{b}/out", fresh_server, "netmind", "--dataset")
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"writing s3://{b}/out failed" in err and "netmind-frames result job-" in err
    assert s3.ls(b, detail=False, refresh=True) == [f"{b}/in"]  # no OUT, no temporary
    batches = len(list_batches(fresh_server))

    monkeypatch.setattr(_sink.ParquetSink, "write", real_write)
    job_id = err.split("netmind-frames result ")[1].split()[0]
    result = ["result", job_id, f"s3://{b}/out", "--dataset", "--poll-interval", "0.05"]
    assert main([*result, "--quiet"]) == EXIT_OK
    back = pq.read_table(f"{b}/out", filesystem=s3).to_pandas()
    assert list(back["response"]) == list(rows()["text"])
    assert len(list_batches(fresh_server)) == batches  # nothing paid twice


def list_batches(srv: LocalBatchServer) -> list[Any]:
    import openai

    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
        return list(client.batches.list())


def test_file_urls_and_local_datasets(tmp_path, server, monkeypatch):
    """file:// works like a path; a local directory is a dataset in and, with --dataset, out."""
    monkeypatch.setenv("NETMIND_API_KEY", server.api_key)
    frame = rows()
    for region in REGIONS:
        folder = tmp_path / "in" / f"region={region}"
        folder.mkdir(parents=True)
        frame[frame["region"] == region][["id", "text"]].to_parquet(folder / "p.parquet")
    out = tmp_path / "out.parquet"
    args = complete(f"file://{tmp_path}/in", f"file://{out}", server, "netmind")
    assert main(args) == EXIT_OK
    got = pd.read_parquet(out)
    assert list(got["id"]) == list(frame["id"]) and list(got["region"]) == list(frame["region"])
    assert main(complete(str(tmp_path / "in"), str(tmp_path / "ds"), server, "netmind",
                         "--dataset")) == EXIT_OK  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(3)
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ds"), got)
    assert not list(tmp_path.glob(".*"))  # no temporary left


@pytest.mark.parametrize(
    ("inp", "out", "says"),
    [
        ("ftp://host/in.parquet", "o.parquet", "IN ftp://host/in.parquet: unknown storage scheme"),
        ("s3:///in.parquet", "o.parquet", "names no bucket"),
        ("s3://k:secret@b/in.parquet", "o.parquet", "not in the URL"),
        ("s3://no-such-bucket/in/", "o.parquet", "IN s3://no-such-bucket/in/: no such file"),
        ("{tmp}/in.parquet", "s3://no-such-bucket/o.parquet", "no such bucket"),
        ("{tmp}/in.parquet", "s3://{bucket}/o.csv", "OUT s3://{bucket}/o.csv: the result is"),
        ("{tmp}/in.parquet", "s3://{bucket}/in.parquet", "a file, not a dataset"),
        ("{tmp}/in.parquet", "gs://bucket/o.parquet", "gcsfs: the cloud extra"),
    ],
)
def test_bad_urls_are_usage_errors_before_anything_is_sent(
    inp, out, says, s3, fresh_server, tmp_path, monkeypatch, capsys
):
    if out.startswith("gs://") and "gcsfs" in sys.modules:
        pytest.skip("gcsfs is installed here")
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    pd.DataFrame({"text": ["a", "b"]}).to_parquet(tmp_path / "in.parquet")
    s3.pipe(f"{s3.bucket}/in.parquet", (tmp_path / "in.parquet").read_bytes())
    fill = {"tmp": str(tmp_path), "bucket": s3.bucket}
    extra = ("--dataset",) if "a file, not" in says else ()
    args = complete(inp.format(**fill), out.format(**fill), fresh_server, "netmind", *extra)
    assert main(args) == EXIT_USAGE
    assert says.format(**fill) in capsys.readouterr().err
    assert uploaded_files(fresh_server) == []


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    """Without fsspec (the extra [cloud]), a URL says what to install; a path needs nothing."""
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(InputError, match=r"pip install -e '\.\[cloud\]'"):
        netmind_frames.batch_complete_file("s3://b/in.parquet", tmp_path / "o.parquet", "{x}")
