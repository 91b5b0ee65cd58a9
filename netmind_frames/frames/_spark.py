"""Spark DataFrames: ``netmind_frames.spark.batch_complete(sdf, ...)`` over the partition core.

The work splits as the core (``_partitions``) says, each pass a ``mapInArrow`` over the same
pinned partitions: a validation pass over every partition (nothing is uploaded until every
partition's rows passed the pandas path's checks; only a small plan per partition comes back
to the driver), then build + upload + create on the executors, partition by partition, in
waves that keep at most ``max_concurrent_batches`` batches of the whole job running (only the
small tickets come back); the wait on the driver (one poller, one progress bar); and the
download + parse + join on the executors again, as a lazy ``mapInArrow`` whose result is the
input's rows, in order, plus the result columns. No row is collected to the driver.

Exactly once: a partition's shards have deterministic fingerprints, so a task that Spark runs
again (a failed task, a lost executor whose journal went with it) finds its batch through the
server-side lookup before it creates anything; the driver's record of the tickets makes the
same call again reattach. This module imports PySpark, so ``import netmind_frames`` never does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

try:
    from pyspark import TaskContext
    from pyspark.sql import DataFrame
    from pyspark.sql.functions import spark_partition_id
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType
except ImportError as exc:
    raise ImportError(
        "Spark DataFrames need the spark extra: from a clone of the repository, "
        "pip install -e '.[spark]'"
    ) from exc

import numpy as np
import openai
import pandas as pd
import pyarrow as pa

from .._errors import InputError
from ..jobs._options import JobOptions
from ..results._structured import json_text
from ..transport._config import MAX_CONCURRENT_BATCHES, MAX_REQUESTS
from ._api import Mode
from ._partitions import (
    PartitionCall,
    PartitionedJob,
    PartitionPlan,
    Ticket,
    join_partition,
    make_call,
    result_meta,
    submit_partition,
    validate_partition,
)

__all__ = ["SparkJob", "batch_complete", "batch_embed", "submit"]

_PLAN = pa.schema(
    [
        ("number", pa.int32()),
        ("n_rows", pa.int64()),
        ("job_id", pa.large_string()),
        ("n_shards", pa.int32()),
        ("error", pa.large_string()),
    ]
)
_TICKET = pa.schema(
    [
        ("number", pa.int32()),
        ("job_id", pa.large_string()),
        ("n_rows", pa.int64()),
        ("n_shards", pa.int32()),
        ("batch_ids", pa.list_(pa.large_string())),
    ]
)
#: PySpark warns of pandas 3 on every ``mapInArrow``; these passes never convert to pandas
#: through PySpark (Arrow in, Arrow out), so that warning says nothing about them.
_PANDAS_WARNING = "PySpark does not yet fully support pandas"


class SparkJob(PartitionedJob):
    """The batches of one call over a Spark DataFrame: ``wait()``, then ``result()``.

    Its ``id`` is derived from the partitions' rows and options; the driver's journal maps it
    to every partition's batches, so the same call again on the same input (same partitions)
    reattaches instead of paying again.
    """

    def __init__(
        self,
        pinned: DataFrame,
        arrow: pa.Schema,
        call: PartitionCall,
        results: list[tuple[str, pa.DataType]],
        plans: list[PartitionPlan],
        waiting: Mapping[str, Any],
    ) -> None:
        super().__init__(call, plans, waiting)
        self._pinned = pinned
        self._arrow = arrow
        self._results = results
        fields = [StructField(name, from_arrow_type(kind), True) for name, kind in results]
        self._schema = StructType([*pinned.schema.fields, *fields])

    @property
    def schema(self) -> StructType:
        """The result's schema: the input's columns plus the result columns."""
        return self._schema

    def result(self, timeout: float | None = None) -> DataFrame:
        """Wait if needed; the lazy result: the input's rows in order plus the result columns,
        joined on the executors when an action runs (each action downloads the results
        again, paying nothing: ``cache()`` it to use it more than once)."""
        by_number = self._tickets_by_number(timeout)
        join = partial(
            _join_task,
            call=self._call,
            tickets=by_number,
            results=self._results,
            schema=self._arrow,
        )
        return _map(self._pinned, join, self._schema)

    def _submit_wave(self, wave: list[tuple[PartitionPlan, int]]) -> list[Ticket]:
        wanted = {plan.number: (plan, shards) for plan, shards in wave}
        # A narrow filter keeps every row in its partition (and its partition id), and sends
        # the rows of the partitions outside this wave nowhere.
        picked = self._pinned.where(spark_partition_id().isin(list(wanted)))
        task = partial(_submit_task, call=self._call, wanted=wanted, schema=self._arrow)
        rows = _map(picked, task, _spark_schema(_TICKET)).collect()
        return [Ticket(r.number, r.job_id, r.n_rows, r.n_shards, tuple(r.batch_ids)) for r in rows]


# -- the executors' side ---------------------------------------------------------------------


def _partition(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> tuple[int, pa.Table]:
    """This task's partition number and its rows, whole (a partition is one job)."""
    context = TaskContext.get()
    assert context is not None  # always set inside a Spark task
    got = list(batches)
    # An empty partition has no batch: then the schema Spark would have sent.
    table = pa.Table.from_batches(got) if got else schema.empty_table()
    return context.partitionId(), table


def _validate_task(
    batches: Iterable[pa.RecordBatch], call: PartitionCall, total: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    number, table = _partition(batches, schema)
    try:
        plan = validate_partition(table.to_pandas(), call, number, total)
        row = {**vars(plan), "error": None}
    except InputError as exc:
        # Sent back, not raised: Spark would retry a failing task; the driver raises it.
        row = {"number": number, "n_rows": 0, "job_id": None, "n_shards": 0, "error": str(exc)}
    yield pa.RecordBatch.from_pylist([row], schema=_PLAN)


def _submit_task(
    batches: Iterable[pa.RecordBatch],
    call: PartitionCall,
    wanted: Mapping[int, tuple[PartitionPlan, int]],
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    number, table = _partition(batches, schema)
    if number not in wanted:
        return
    plan, shards = wanted[number]
    ticket = submit_partition(table.to_pandas(), call, plan, shards)
    row = {**vars(ticket), "batch_ids": list(ticket.batch_ids)}
    yield pa.RecordBatch.from_pylist([row], schema=_TICKET)


def _join_task(
    batches: Iterable[pa.RecordBatch],
    call: PartitionCall,
    tickets: Mapping[int, Ticket],
    results: list[tuple[str, pa.DataType]],
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    number, table = _partition(batches, schema)
    if table.num_rows == 0:
        return
    # The input's columns go back as Spark sent them; only the result columns are converted.
    out = join_partition(table.to_pandas(), call, tickets[number])
    for name, kind in results:
        table = table.append_column(pa.field(name, kind), _arrow(out[name], kind))
    yield from table.to_batches()


#: The pandas dtypes of result columns that have an Arrow type of their own (the rest is text).
_ARROW_TYPES: dict[str, pa.DataType] = {
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "boolean": pa.bool_(),
}


def _to_arrow(column: pd.Series) -> pa.Array:
    """A pandas result column as Arrow: nullable numbers and booleans as themselves, lists and
    objects as JSON text (they differ from partition to partition), anything else as text."""
    dtype = str(column.dtype)
    if dtype in _ARROW_TYPES:
        return pa.array(column, type=_ARROW_TYPES[dtype], from_pandas=True)
    if dtype == "object":
        return json_text(column.tolist())
    mask = np.asarray(column.isna(), dtype=bool)
    return pa.array(column.astype(object).where(~mask, None).tolist(), type=pa.large_string())


def _arrow(column: pd.Series, kind: pa.DataType) -> pa.Array:
    """One result column as Arrow, of the type :func:`_results` gave it: as the CLI writes it
    to a file (lists and objects of structured outputs as JSON text, categories as text)."""
    if pa.types.is_list(kind):  # embeddings: float32 arrays, None where missing
        return pa.array(list(column), type=kind)
    return _to_arrow(column).cast(kind)


# -- the driver's side -----------------------------------------------------------------------


def _results(sample: pd.DataFrame, options: JobOptions) -> list[tuple[str, pa.DataType]]:
    """The result columns the pandas path appends, each with the Arrow type of its dtype:
    strings are strings, ``Int64`` long, ``Float64`` double, ``boolean`` boolean, embeddings
    float32 arrays; other objects (structured lists and objects) JSON text."""
    meta = result_meta(sample, options)
    embedding = None if options.embed_column is None else options.prefix + "embedding"
    out = []
    for name in meta.columns[len(sample.columns) :]:
        dtype = str(meta[name].dtype)
        if dtype in _ARROW_TYPES:
            out.append((name, _ARROW_TYPES[dtype]))
        elif name == embedding:
            out.append((name, pa.list_(pa.float32())))
        else:
            out.append((name, pa.large_string()))
    return out


def _sample(schema: pa.Schema) -> pd.DataFrame:
    """A one-row frame of the input's columns and dtypes, for the checks of the arguments
    that need no rows (``_prepare`` refuses an empty input); nothing is read."""
    columns = {f.name: pa.array([_placeholder(f.type)], type=f.type) for f in schema}
    return pa.table(columns).to_pandas()


def _placeholder(kind: pa.DataType) -> Any:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "0"  # a valid custom id, if this is the custom_id_column
    if pa.types.is_integer(kind):
        return 0
    if pa.types.is_floating(kind):
        return 0.0
    if pa.types.is_boolean(kind):
        return False
    return None


def _spark_schema(schema: pa.Schema) -> StructType:
    return StructType([StructField(f.name, from_arrow_type(f.type), True) for f in schema])


def _map(frame: DataFrame, task: Callable[..., Any], schema: StructType) -> DataFrame:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
        return frame.mapInArrow(task, schema)


def _pin(frame: DataFrame) -> DataFrame:
    """``frame`` computed once, its partitions fixed for every pass of the job.

    Spark may compute a DataFrame again for each action, and a recomputed shuffle, sample or
    nondeterministic source can put other rows in a partition (or in another order): the
    validation pass would then check other rows than those submitted, and a retried task would
    build other shards (another fingerprint, another batch). A checkpoint cuts the lineage: the
    passes read the same stored partitions, so ``spark_partition_id()`` and the row positions
    in it are stable keys. With a checkpoint directory (``sc.setCheckpointDir``), the reliable
    ``checkpoint()`` survives a lost executor; without, ``localCheckpoint()`` keeps the blocks
    on the executors (cheaper; a lost executor then fails the job instead of recomputing
    other rows, which costs nothing twice either). The core checks each partition's job id
    again before submitting and joining.
    """
    if frame.sparkSession.sparkContext.getCheckpointDir() is not None:
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _submit(frame: DataFrame, prompt: str | None, kwargs: dict[str, Any]) -> SparkJob:
    """Check the call on the driver, pin and validate every partition, submit the first wave."""
    if not isinstance(frame, DataFrame):
        raise InputError(
            f"sdf must be a pyspark.sql.DataFrame, not {type(frame).__name__}: for a pandas "
            "frame use df.netmind.batch_complete(...)"
        )
    schema = _arrow_schema(frame)
    sample = _sample(schema)
    call, options = make_call(sample, prompt, kwargs, engine="Spark")
    results = _results(sample, options)
    pinned = _pin(frame)
    total = pinned.rdd.getNumPartitions()
    check = partial(_validate_task, call=call, total=total, schema=schema)
    rows = sorted(_map(pinned, check, _spark_schema(_PLAN)).collect(), key=lambda r: r.number)
    bad = [r.error for r in rows if r.error is not None]
    if bad:
        raise InputError(bad[0])
    seen = {r.number: PartitionPlan(r.number, r.n_rows, r.job_id, r.n_shards) for r in rows}
    plans = [seen.get(n, PartitionPlan(n, 0, None, 0)) for n in range(total)]
    if not any(p.n_rows for p in plans):
        raise InputError("the input is empty: there is nothing to send")
    return SparkJob(pinned, schema, call, results, plans, kwargs).start()


def _arrow_schema(frame: DataFrame) -> pa.Schema:
    """The Arrow schema of the batches Spark sends to ``mapInArrow``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    timezone = frame.sparkSession.conf.get("spark.sql.session.timeZone")
    return to_arrow_schema(frame.schema, timezone=timezone)


# -- the public functions ---------------------------------------------------------------------


def _arguments(local_vars: dict[str, Any]) -> dict[str, Any]:
    arguments = {k: v for k, v in local_vars.items() if k not in ("sdf", "params")}
    arguments.update(local_vars["params"])
    return arguments


def batch_complete(
    sdf: DataFrame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
    prefix: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    progress: bool = True,
    retries: int = 2,
    resubmit: bool = False,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **params: Any,
) -> DataFrame:
    """Run one chat completion per row of a Spark DataFrame; block until every batch is done.

    Takes the arguments of :func:`netmind_frames.batch_complete`; those a partitioned job
    cannot honour (``client=``, ``local=True``, ``mode='sync'``, ``resubmit=True``,
    ``max_cost=``) raise ``InputError`` saying so. Returns a lazy Spark DataFrame: the input's
    rows and columns plus ``response``, ``finish_reason``, ``prompt_tokens``,
    ``completion_tokens``, ``error_code``, ``error_message`` and ``status`` (and the
    ``schema=`` columns), joined on the executors when an action runs.

    Example:
        >>> from netmind_frames import spark as nm
        >>> out = nm.batch_complete(sdf, "Say {text}", model="m", base_url=url)
    """
    kwargs = _arguments(locals())
    return _submit(sdf, kwargs.pop("prompt"), kwargs).result(timeout=timeout)


def submit(
    sdf: DataFrame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
    prefix: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    progress: bool = True,
    retries: int = 2,
    resubmit: bool = False,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **params: Any,
) -> SparkJob:
    """Validate every partition, submit the first wave and return a :class:`SparkJob`
    (``job.wait()``, ``job.result()``); see :func:`batch_complete`."""
    kwargs = _arguments(locals())
    return _submit(sdf, kwargs.pop("prompt"), kwargs)


def batch_embed(
    sdf: DataFrame,
    column: str,
    *,
    model: str | None = None,
    model_column: str | None = None,
    custom_id_column: str | None = None,
    params_column: str | None = None,
    prefix: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    progress: bool = True,
    retries: int = 2,
    resubmit: bool = False,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    **params: Any,
) -> DataFrame:
    """Embed every row's text (see :func:`netmind_frames.batch_embed`); the lazy result with
    ``embedding`` (array of float), ``prompt_tokens``, ``error_code``, ``error_message`` and
    ``status`` appended."""
    kwargs = _arguments(locals())
    kwargs["embed_column"] = kwargs.pop("column")
    return _submit(sdf, None, kwargs).result(timeout=timeout)
