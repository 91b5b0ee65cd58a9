"""One behaviour, three front ends: pandas, Polars and Arrow run the same scenarios against the
real local batch server and must give the same results, cell by cell, each in its own types."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import netmind_frames
from netmind_frames import BatchJob, LocalBatchServer, RowError
from netmind_frames.build import _rowparams

pl = pytest.importorskip("polars")

from conftest import connection_kwargs, uploaded_files  # noqa: E402

FRONT_ENDS = ("pandas", "polars", "arrow")
DATA: dict[str, list[Any]] = {
    "text": [f'review {i}: {"good" if i % 3 else "bad"} "stuff"\n' for i in range(9)],
    "stars": [i % 5 + 1 for i in range(9)],
    "model": ["m-a", "m-b", "m-a", "m-b", "m-a", "m-b", "m-a", "m-b", "m-a"],
    "params": [{"max_tokens": 3}, None, {"max_tokens": 3}, None, None, None, None, None, None],
}
#: Rows for the tests of seeded failures. The server draws them per batch id, which is random,
#: so a handful of rows may draw none: 0.7 ** 9 = 4% of runs had no failed row at all.
MANY: dict[str, list[Any]] = {
    "text": [f'review {i}: {"good" if i % 3 else "bad"} "stuff"\n' for i in range(40)],
    "stars": [i % 5 + 1 for i in range(40)],
    "model": ["m-a", "m-b"] * 20,
    "params": [{"max_tokens": 3} if i % 4 == 0 else None for i in range(40)],
}
RESULT_TYPES = {
    "response": pl.String,
    "finish_reason": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "error_code": pl.String,
    "error_message": pl.String,
    "status": pl.String,
}


def make(kind: str, data: dict[str, list[Any]] = DATA) -> Any:
    """The same rows as a pandas DataFrame, a Polars DataFrame or a pyarrow.Table."""
    if kind == "pandas":
        return pd.DataFrame(data)
    if kind == "polars":
        return pl.DataFrame(data)
    return pa.table(data)


def cells(out: Any) -> list[dict[str, Any]]:
    """Every cell as a plain Python value (None for any missing value), row by row."""
    if isinstance(out, pd.DataFrame):
        rows = out.to_dict("records")
    elif isinstance(out, pl.DataFrame):
        rows = out.to_dicts()
    else:
        rows = out.to_pylist()
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.ndarray, pl.Series)):
        return (
            [_plain(v) for v in value.tolist()]
            if isinstance(value, np.ndarray)
            else [_plain(v) for v in value.to_list()]
        )
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def run_all(call: Callable[[Any], Any], data: dict[str, list[Any]] = DATA) -> dict[str, Any]:
    """``call(frame)`` for each front end; checks each result is of its input's kind."""
    outs = {kind: call(make(kind, data)) for kind in FRONT_ENDS}
    assert isinstance(outs["pandas"], pd.DataFrame)
    assert isinstance(outs["polars"], pl.DataFrame)
    assert isinstance(outs["arrow"], pa.Table)
    return outs


def assert_same_cells(outs: dict[str, Any]) -> list[dict[str, Any]]:
    expected = cells(outs["pandas"])
    for kind in ("polars", "arrow"):
        assert cells(outs[kind]) == expected, kind
    return expected


def assert_native_types(outs: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Polars gets native types; Arrow the same ones (read back through Polars)."""
    types = {**RESULT_TYPES, **(extra or {})}
    for kind in ("polars", "arrow"):
        schema = pl.from_arrow(outs[kind]).schema if kind == "arrow" else outs[kind].schema
        assert list(schema)[: len(DATA)] == list(DATA), kind  # input columns first, in order
        got = {name: schema[name] for name in types}
        if kind == "arrow":  # a dictionary reads back as Categorical; Polars' is the Enum
            types = {n: pl.Categorical if isinstance(t, pl.Enum) else t for n, t in types.items()}
        assert got == types, kind


def test_the_same_rows_make_the_same_bytes_and_job(server):
    datas = {k: netmind_frames.to_jsonl(make(k), prompt="{text} ({stars})", model="m")
             for k in FRONT_ENDS}  # fmt: skip
    assert datas["polars"] == datas["pandas"] == datas["arrow"]
    kwargs = connection_kwargs(server, "netmind")
    ids = {k: netmind_frames.submit(make(k), "{text} ({stars})", model="m", **kwargs).id
           for k in FRONT_ENDS}  # fmt: skip
    assert len(set(ids.values())) == 1, ids  # one job: the second and third reattach


@pytest.mark.parametrize("mode", ["batch", "sync"])
def test_happy_path_with_model_and_params_columns(fresh_server, mode):
    kwargs = connection_kwargs(fresh_server, "openai")
    outs = run_all(
        lambda frame: netmind_frames.batch_complete(
            frame, "{text}", model_column="model", params_column="params", mode=mode, **kwargs
        )
    )
    rows = assert_same_cells(outs)
    assert [r["status"] for r in rows] == ["ok"] * len(DATA["text"])
    assert rows[1]["response"] == DATA["text"][1]
    assert rows[0]["completion_tokens"] == 3  # the row's own max_tokens
    assert_native_types(outs)
    assert outs["polars"].select(pl.all().head(0)).columns[:4] == list(DATA)
    assert outs["polars"]["params"].to_list() == pl.DataFrame(DATA)["params"].to_list()


def test_failed_rows(server, monkeypatch):
    """A row whose own params make a bad request fails, the same way on every front end."""
    # The client now refuses such params before upload; let them through to reach the server.
    monkeypatch.setattr(_rowparams, "check_param_types", lambda params: None)
    data = {**DATA, "params": [{"max_tokens": "many"} if i % 4 == 0 else None for i in range(9)]}
    kwargs = connection_kwargs(server, "netmind")
    outs = {
        k: netmind_frames.batch_complete(
            make(k, data), "{text}", model="m", params_column="params", retries=2, **kwargs
        )
        for k in FRONT_ENDS
    }
    rows = assert_same_cells(outs)
    failed = [i for i, r in enumerate(rows) if r["status"] == "failed"]
    assert failed == [0, 4, 8]
    assert all(rows[i]["error_message"] and rows[i]["response"] is None for i in failed)


def test_expired_rows():
    with LocalBatchServer(seconds_per_request=0.05, expire_after=0) as srv:
        kwargs = connection_kwargs(srv, "netmind")
        outs = run_all(
            lambda frame: netmind_frames.batch_complete(
                frame, "{text}", model="m", retries=0, **kwargs
            )
        )
    rows = assert_same_cells(outs)
    assert {(r["status"], r["error_code"]) for r in rows} == {("expired", "batch_expired")}
    assert_native_types(outs)


def test_retries_recover_the_same_rows():
    with LocalBatchServer(fail_rate=0.3, seed=5) as srv:
        kwargs = connection_kwargs(srv, "openai")
        # 40 rows at 0.3: none failing is 0.7 ** 40; one failing all 13 tries, 40 * 0.3 ** 13.
        jobs = {k: netmind_frames.submit(make(k, MANY), "{text}", model="m", retries=12, **kwargs)
                for k in FRONT_ENDS}  # fmt: skip
        outs = {k: job.result() for k, job in jobs.items()}
    assert all(job.retry_batch_ids for job in jobs.values()), "the knob should fail some rows"
    rows = assert_same_cells(outs)
    assert [r["response"] for r in rows] == MANY["text"]


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["neg", "pos", "mixed"]},
        "score": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "note": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "string"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
    "required": ["label", "score", "ratio", "flag", "note", "tags", "meta"],
    "additionalProperties": False,
}


def test_schema_columns_are_native(server):
    kwargs = connection_kwargs(server, "netmind")
    outs = run_all(
        lambda frame: netmind_frames.batch_complete(
            frame, "{text}", model="m", schema=SCHEMA, prefix="nm_", **kwargs
        )
    )
    expected = assert_same_cells(outs)
    assert all(r["nm_status"] == "ok" and r["nm_label"] in ("neg", "pos", "mixed")
               for r in expected)  # fmt: skip
    assert all(isinstance(r["nm_meta"]["a"], float) for r in expected)
    schema = outs["polars"].schema
    assert schema["nm_label"] == pl.Enum(["neg", "pos", "mixed"])  # the schema's order
    assert schema["nm_score"] == pl.Int64
    assert schema["nm_ratio"] == pl.Float64
    assert schema["nm_flag"] == pl.Boolean
    assert schema["nm_note"] == pl.String
    assert schema["nm_tags"] == pl.List(pl.String)
    assert schema["nm_meta"] == pl.Struct({"a": pl.Float64, "b": pl.String})
    label = outs["arrow"].schema.field("nm_label").type
    assert pa.types.is_dictionary(label)
    assert outs["arrow"].column("nm_label").chunk(0).dictionary.to_pylist() == [
        "neg",
        "pos",
        "mixed",
    ]


def test_embeddings(server):
    kwargs = connection_kwargs(server, "openai")
    outs = run_all(lambda frame: netmind_frames.batch_embed(frame, "text", model="e", **kwargs))
    rows = assert_same_cells(outs)
    width = len(rows[0]["embedding"])
    assert width > 0 and all(r["status"] == "ok" for r in rows)
    assert outs["polars"].schema["embedding"] == pl.Array(pl.Float32, width)
    assert outs["arrow"].schema.field("embedding").type == pa.list_(pa.float32(), width)


def test_polars_namespace_and_lazyframe_match_the_functions(server):
    kwargs = connection_kwargs(server, "netmind")
    eager = pl.DataFrame(DATA).netmind.batch_complete("{text}", model="m", **kwargs)
    lazy = pl.LazyFrame(DATA).netmind.batch_complete("{text}", model="m", **kwargs)
    function = netmind_frames.batch_complete(pl.DataFrame(DATA), "{text}", model="m", **kwargs)
    assert isinstance(lazy, pl.DataFrame)
    assert eager.equals(lazy) and eager.equals(function)
    job = pl.LazyFrame(DATA).netmind.submit("{text}", model="m", **kwargs)
    assert job.result().equals(eager)
    reader = pa.table(DATA).to_reader(max_chunksize=4)
    assert cells(netmind_frames.batch_complete(reader, "{text}", model="m", **kwargs)) == cells(
        eager
    )


_SUBMIT_AND_DIE = """
import os, signal, sys, json
import pandas as pd, polars as pl, pyarrow as pa
import netmind_frames
kind, base_url, api_key, data = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
frame = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "arrow": pa.table}[kind](data)
job = netmind_frames.submit(frame, "{text}", model="m", base_url=base_url, api_key=api_key,
                            progress=False, max_requests=4)
print(job.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind", FRONT_ENDS)
def test_reattach_after_a_killed_process(kind):
    import json

    data = {"text": DATA["text"], "stars": DATA["stars"]}
    with LocalBatchServer(seed=2) as srv:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_SUBMIT_AND_DIE), kind, srv.base_url,
             srv.api_key, json.dumps(data)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == -9, done.stderr
        job_id = done.stdout.strip()
        created = len(uploaded_files(srv))
        job = BatchJob.attach(job_id, frame=make(kind, data), api_key=srv.api_key, progress=False,
                              poll_interval=0.05)  # fmt: skip
        out = job.result()
        assert len(uploaded_files(srv)) <= created  # nothing uploaded again (inputs deleted)
    expected = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "arrow": pa.Table}[kind]
    assert isinstance(out, expected)
    assert job.id == job_id
    rows = cells(out)
    assert [r["response"] for r in rows] == data["text"]
    assert {r["status"] for r in rows} == {"ok"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stars": [1, None, 3, 4, 5, 1, 2, 3, 4]}, "row 1 (index 1): column 'stars' is null"),
        ({}, "template column 'missing' is not in the frame"),
    ],
)
def test_bad_input_is_caught_before_upload(fresh_server, change, message):
    data = {**DATA, **change}
    prompt = "{text} {stars}" if change else "{text} {missing}"
    kwargs = connection_kwargs(fresh_server, "netmind")
    errors = []
    for kind in FRONT_ENDS:
        with pytest.raises(netmind_frames.InputError) as caught:
            netmind_frames.submit(make(kind, data), prompt, model="m", **kwargs)
        errors.append(str(caught.value))
    assert message in errors[0]
    assert errors[1] == errors[2] and message in errors[1]
    assert uploaded_files(fresh_server) == []
    assert issubclass(RowError, netmind_frames.InputError)


def test_to_parquet_keeps_the_cli_schema_whichever_front_end(server, tmp_path):
    kwargs = connection_kwargs(server, "netmind")
    frames = {"polars": pl.DataFrame(DATA).drop("params"), "arrow": pa.table(DATA).drop(["params"])}
    source = tmp_path / "in.parquet"
    frames["arrow"].to_pandas().to_parquet(source)
    schemas = {}
    for kind, frame in frames.items():
        job = netmind_frames.submit(frame, "{text}", model="m", schema=SCHEMA, **kwargs)
        job.to_parquet(tmp_path / f"{kind}.parquet")
        schemas[kind] = pa.parquet.read_schema(tmp_path / f"{kind}.parquet")
    from netmind_frames.frames._api import submit_file

    submit_file(source, "{text}", model="m", schema=SCHEMA, **kwargs).to_parquet(tmp_path / "c.pq")
    cli = pa.parquet.read_schema(tmp_path / "c.pq")
    added = cli.names[len(frames["arrow"].column_names) :]
    for kind, schema in schemas.items():
        assert [(f.name, f.type) for f in schema if f.name in added] == [
            (f.name, f.type) for f in cli if f.name in added
        ], kind


@pytest.mark.parametrize(
    "code",
    [
        # netmind_frames first: Polars is not imported by it, and registered once it is
        "import netmind_frames, sys; assert 'polars' not in sys.modules; import polars as pl",
        "import polars as pl, netmind_frames",  # Polars first
    ],
)
def test_polars_namespace_registers_in_either_import_order(code):
    check = "; print(type(pl.DataFrame({'a': ['x']}).netmind).__name__, " \
            "type(pl.LazyFrame({'a': ['x']}).netmind).__name__)"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-W", "error", "-c", code + check], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PolarsNetmind", "PolarsNetmind"]


BULK_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["neg", "pos", "mixed"]},
        "score": {"type": "integer", "minimum": 0},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "score", "ratio", "flag", "note", "tags"],
    "additionalProperties": False,
}


def test_bulk_proven_schema_columns_and_invalid_rows_match_cell_by_cell():
    """A schema Arrow proves in bulk, answers partly corrupted by the server: the same rows
    are invalid everywhere, with the same messages, and the typed cells agree; pandas keeps
    its dtypes, Polars and Arrow get native types built straight from Arrow."""
    from netmind_frames.results._schema import output_schema

    assert output_schema(BULK_SCHEMA).plan is not None  # this schema takes the bulk path
    with LocalBatchServer(corrupt_rate=0.4, seed=5) as srv:
        kwargs = connection_kwargs(srv, "openai")
        outs = run_all(
            lambda frame: netmind_frames.batch_complete(
                frame, "{text}", model="m", schema=BULK_SCHEMA, retries=0, **kwargs
            ),
            MANY,  # 40 rows at 0.4: none corrupted is 0.6 ** 40 (1e-9)
        )
    rows = assert_same_cells(outs)
    statuses = [r["status"] for r in rows]
    assert "ok" in statuses and "failed" in statuses  # seeded: some answers were corrupted
    for row in rows:
        if row["status"] == "failed":
            assert row["error_code"] == "invalid_output" and row["label"] is None
        else:
            assert row["label"] in ("neg", "pos", "mixed") and isinstance(row["tags"], list)
    dtypes = {n: str(outs["pandas"][n].dtype) for n in BULK_SCHEMA["properties"]}
    assert dtypes == {"label": "category", "score": "Int64", "ratio": "Float64",
                      "flag": "boolean", "note": "string", "tags": "object"}  # fmt: skip
    assert_native_types(
        outs,
        {"label": pl.Enum(["neg", "pos", "mixed"]), "score": pl.Int64, "ratio": pl.Float64,
         "flag": pl.Boolean, "note": pl.String, "tags": pl.List(pl.String)},
    )  # fmt: skip


def test_a_record_batch_reader_is_consumed_batch_by_batch(server):
    """The reader's batches are spooled as they come, never all held at once, and the
    result is a pyarrow.Table with the same cells as for the whole table."""
    table = pa.table({"text": [f"row {i} " + "x" * 2000 for i in range(4000)]})
    held: list[int] = []

    def batches() -> Any:
        for batch in table.to_batches(max_chunksize=500):
            copy = pa.RecordBatch.from_pylist(batch.to_pylist(), schema=table.schema)
            held.append(pa.total_allocated_bytes())
            yield copy

    base = pa.total_allocated_bytes()
    reader = pa.RecordBatchReader.from_batches(table.schema, batches())
    kwargs = connection_kwargs(server, "netmind")
    out = netmind_frames.batch_complete(reader, "{text}", model="m", **kwargs)
    assert isinstance(out, pa.Table) and out.column_names[0] == "text"
    assert out.column("text").equals(table.column("text"))
    assert set(out.column("status").to_pylist()) == {"ok"}
    size = table.nbytes
    assert len(held) == 8 and max(held) - base < size / 2  # ~1 batch, not the 8 of them
