"""``netmind_frames.spark`` on a real ``local[2]`` SparkSession (Python workers in their own
processes) against the local batch server over loopback, in both dialects: the pandas path's
results and types, a task that dies after submitting (retried by Spark, its journal lost), the
validation pass before any upload, and the same call again after an interruption."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pandas as pd
import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (java on PATH or JAVA_HOME)", allow_module_level=True)

from conftest import (
    assert_paid_once,
    connection_kwargs,
    server_batches,
    until_answered,
    uploaded_files,
)
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    LongType,
    StringType,
)

from netmind_frames import InputError, JobTimeoutError
from netmind_frames import spark as nm
from netmind_frames.server import LocalBatchServer

# PySpark warns of pandas 3 whenever it converts (createDataFrame, toPandas).
pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-nmf-SPARK-SENTINEL-4b1d9e07"
HOME = "NETMIND_FRAMES_HOME"
CALL = {"model": "m", "max_tokens": 6, "max_requests": 4, "max_concurrent_batches": 3}
#: The Spark type of each pandas dtype the pandas path gives.
SPARK_TYPES: dict[str, DataType] = {
    "str": StringType(),
    "string": StringType(),
    "object": StringType(),
    "int64": LongType(),
    "Int64": LongType(),
}

#: Imported by every Python worker of the session (on its PYTHONPATH): once the marker file
#: exists, the first task to create a batch loses its journal and dies right after the create,
#: as a lost executor would. Spark then runs the task again.
_FAULT = """
import os, shutil

MARKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exit-after-submit")


def _install():
    from netmind_frames.jobs import _rounds

    real = _rounds.submit_shard

    def submit_then_exit(*args, **kwargs):
        batch_id = real(*args, **kwargs)
        try:
            os.unlink(MARKER)  # one task only
        except FileNotFoundError:
            return batch_id
        shutil.rmtree(os.environ["NETMIND_FRAMES_HOME"], ignore_errors=True)
        os._exit(1)

    _rounds.submit_shard = submit_then_exit


_install()
"""


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One ``local[2, 2]`` session (two task threads, a failed task tried twice), UI off,
    bound to loopback; its Python workers use this interpreter, this checkout and a journal
    folder of their own, not the driver's."""
    faults = tmp_path_factory.mktemp("spark-faults")
    (faults / "sitecustomize.py").write_text(_FAULT)
    executors = tmp_path_factory.mktemp("spark-executors")
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = (
        SparkSession.builder.master("local[2, 2]")
        .appName("netmind-frames-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config(f"spark.executorEnv.{HOME}", str(executors))
        .config("spark.executorEnv.PYTHONPATH", f"{faults}{os.pathsep}{ROOT}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pandas(rows: int = 30) -> pd.DataFrame:
    texts = [f"row {i} is {'good' if i % 3 else 'bad'}" for i in range(rows)]
    return pd.DataFrame({"text": texts, "n": range(rows)})


def _frame(spark: SparkSession, rows: int = 30, partitions: int = 3) -> Any:
    """A Spark DataFrame of ``_pandas(rows)`` in ``partitions`` slices, in the same order."""
    records = [(t, int(n)) for t, n in _pandas(rows).itertuples(index=False)]
    return spark.createDataFrame(
        spark.sparkContext.parallelize(records, partitions), "text string, n long"
    )


def _collect(sdf: Any) -> pd.DataFrame:
    """A Spark DataFrame's rows in pandas, through Arrow (PySpark's own ``toPandas`` warns
    under pandas 3)."""
    return sdf.toArrow().to_pandas()


def _values(frame: pd.DataFrame) -> list[list[Any]]:
    """Rows as lists of plain values, missing ones None (Spark and pandas spell NA apart)."""
    return frame.astype(object).where(frame.notna(), None).values.tolist()


def test_results_equal_the_pandas_path(spark: SparkSession, fresh_server: Any, dialect: str):
    kwargs = {**connection_kwargs(fresh_server, dialect), **CALL}
    out = nm.batch_complete(_frame(spark), "Say {text}", **kwargs)
    reference = _pandas().netmind.batch_complete("Say {text}", **kwargs)
    # The schema is known before any action: the pandas columns, each of its Spark type.
    want = [(name, SPARK_TYPES[str(dtype)]) for name, dtype in reference.dtypes.items()]
    assert [(f.name, f.dataType) for f in out.schema.fields] == want
    result = _collect(out)
    assert _values(result) == _values(reference)  # values and order
    assert (result["status"] == "ok").all()
    assert out.rdd.getNumPartitions() == 3


def test_embeddings_equal_the_pandas_path(spark: SparkSession, fresh_server: Any):
    kwargs = {**connection_kwargs(fresh_server, "openai"), "model": "emb", "max_requests": 4}
    out = nm.batch_embed(_frame(spark, rows=12, partitions=2), "text", **kwargs)
    reference = _pandas(12).netmind.batch_embed("text", **kwargs)
    fields = {f.name: f.dataType for f in out.schema.fields}
    assert fields["embedding"] == ArrayType(FloatType())
    assert fields["prompt_tokens"] == LongType()
    rows = out.collect()
    assert [r.text for r in rows] == list(reference["text"])
    for row, want in zip(rows, reference["embedding"], strict=True):
        assert row.embedding == pytest.approx(list(want))


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {"source": {"type": "string"}}},
    },
    "required": ["label", "score", "count", "flag", "tags", "meta"],
}


def test_structured_columns_have_spark_types(spark: SparkSession, server: LocalBatchServer):
    kwargs = {**connection_kwargs(server, "openai"), "model": "m", "schema": SCHEMA}
    out = nm.batch_complete(_frame(spark, rows=8, partitions=2), "{text}", **kwargs)
    reference = _pandas(8).netmind.batch_complete("{text}", **kwargs)
    fields = {f.name: f.dataType for f in out.schema.fields}
    assert fields["count"] == LongType() and fields["score"] == DoubleType()
    assert fields["flag"] == BooleanType() and fields["label"] == StringType()
    # Lists and objects are JSON text, as in the files the CLI writes.
    assert fields["tags"] == StringType() and fields["meta"] == StringType()
    result = _collect(out)
    for name in ("label", "score", "count", "flag"):
        assert _values(result[[name]]) == _values(reference[[name]].astype(object))
    assert [json.loads(t) for t in result["tags"]] == list(reference["tags"])
    assert [json.loads(m) for m in result["meta"]] == list(reference["meta"])


def test_a_task_that_dies_after_submitting_costs_nothing_twice(
    spark: SparkSession, fresh_server: Any, tmp_path: Path
):
    faults = Path(spark.sparkContext.environment["PYTHONPATH"].split(os.pathsep)[0])
    marker = faults / "exit-after-submit"
    marker.touch()
    try:
        kwargs = {**connection_kwargs(fresh_server, "netmind"), **CALL}
        job = nm.submit(_frame(spark), "Say {text}", **kwargs)
        result = _collect(job.result())
        assert not marker.exists()  # a task did die right after a create
    finally:
        marker.unlink(missing_ok=True)
    assert list(result["n"]) == list(range(30))
    assert (result["status"] == "ok").all()
    assert list(result["response"]) == ["Say " + text for text in result["text"]]
    # Its retry had no journal: the server-side lookup found the first batch.
    assert_paid_once(fresh_server, sum(t.n_shards for t in job.tickets))


def test_a_bad_row_in_partition_37_of_40_stops_before_any_upload(
    spark: SparkSession, fresh_server: Any
):
    # 40 slices of 10 rows: row 363 is row 3 of partition 36 (counting from 0); no text.
    frame = spark.createDataFrame(
        spark.sparkContext.parallelize(
            [(None if n == 363 else f"row {n}", n) for n in range(400)], 40
        ),
        "text string, n long",
    )
    kwargs = {**connection_kwargs(fresh_server, "netmind"), **CALL}
    with pytest.raises(InputError) as caught:
        nm.batch_complete(frame, "Say {text}", **kwargs)
    message = str(caught.value)
    assert "partition 37 of 40" in message
    assert "row 3 (index 3)" in message
    assert "'text'" in message
    assert uploaded_files(fresh_server) == []
    assert server_batches(fresh_server) == []


def test_the_same_call_after_an_interruption_reattaches(
    spark: SparkSession, caplog: pytest.LogCaptureFixture
):
    # Each batch answers its first two polls "pending": the first wait cannot see it done.
    with LocalBatchServer(seed=2, queued_polls=2, api_key=SECRET) as srv:
        kwargs = {**connection_kwargs(srv, "openai"), **CALL, "max_concurrent_batches": 20}
        # The driver stops waiting (as at a Ctrl-C) once every batch is created.
        with pytest.raises(JobTimeoutError, match="Reattach by running the same call again"):
            nm.batch_complete(_frame(spark), "Say {text}", timeout=0.01, **kwargs)
        before = {b.id for b in server_batches(srv)}
        assert len(before) == 9
        with caplog.at_level(logging.DEBUG, logger="netmind_frames"):
            out = nm.batch_complete(_frame(spark), "Say {text}", **kwargs)
            result = _collect(out)
        assert "reattached to job" in caplog.text
        # The key travels to the executors inside the tasks, and is written nowhere.
        assert SECRET not in caplog.text
        assert SECRET not in out._jdf.queryExecution().toString()
        homes = [os.environ["NETMIND_FRAMES_HOME"], spark.sparkContext.environment[HOME]]
        files = [f for home in homes for f in Path(home).rglob("*") if f.is_file()]
        assert files
        assert not [f for f in files if SECRET.encode() in f.read_bytes()]
        assert (result["status"] == "ok").all()
        assert len(result) == 30
        assert {b.id for b in server_batches(srv)} == before  # nothing submitted again


def test_cancel_stops_the_batches_and_submits_no_more(spark: SparkSession):
    with LocalBatchServer(seed=2, seconds_per_request=2) as srv:
        kwargs = {**connection_kwargs(srv, "openai"), **CALL}  # 3 batches at a time
        job = nm.submit(_frame(spark), "Say {text}", **kwargs)
        first = {b.id for b in server_batches(srv)}
        assert len(first) == 3  # partition 0's three shards
        until_answered(srv)
        assert job.cancel(timeout=60) is job
        batches = server_batches(srv)
        assert {b.id for b in batches} == first
        assert "cancelled" in {b.status for b in batches}
        answered = sum(b.request_counts.completed for b in batches)
        assert answered >= 1
        result = _collect(job.result())
        assert result["n"].tolist() == list(range(30))
        assert (result["status"].iloc[10:] == "cancelled").all()  # never submitted
        ok = result[result["status"] == "ok"]
        assert len(ok) == answered
        assert set(result["status"]) <= {"ok", "cancelled"}
        pairs = zip(ok["response"], ok["n"], strict=True)
        assert all(r.startswith(f"Say row {n} ") for r, n in pairs)
        assert {b.id for b in server_batches(srv)} == first


def test_what_cannot_apply_says_so(spark: SparkSession, server: LocalBatchServer):
    frame = _frame(spark, rows=3, partitions=1)
    kwargs = {**connection_kwargs(server, "openai"), "model": "m"}
    with pytest.raises(InputError, match=r"local=True cannot be used with Spark"):
        nm.batch_complete(frame, "Say {text}", model="m", local=True)
    with pytest.raises(InputError, match=r"mode='sync' cannot be used with Spark"):
        nm.batch_complete(frame, "Say {text}", mode="sync", **kwargs)
    client = openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key)
    with client, pytest.raises(InputError, match=r"client= cannot be used with Spark"):
        nm.batch_complete(frame, "Say {text}", model="m", client=client)
    # Checked on the driver from the schema alone, before any Spark job or upload.
    with pytest.raises(InputError, match=r"'nope' is not in the frame"):
        nm.batch_complete(frame, prompt_column="nope", **kwargs)
    with pytest.raises(InputError, match=r"sdf must be a pyspark.sql.DataFrame"):
        nm.batch_complete(_pandas(), "Say {text}", **kwargs)


def test_without_pyspark_the_error_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        import netmind_frames
        assert "pyspark" not in sys.modules  # importing the package never imports Spark
        sys.modules["pyspark"] = None  # as if it were not installed
        try:
            import netmind_frames.spark
        except ImportError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "pip install -e '.[spark]'" in done.stdout
