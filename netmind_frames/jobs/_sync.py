"""Sync mode: the rows of a call sent to the synchronous endpoint, for quick iteration.

The requests are those of batch mode: the same request plan (``JobOptions.build``), and each
line's ``body`` posted byte for byte to ``{base_url}/chat/completions`` (or
``/embeddings``) through the call's openai client, ``max_concurrency`` at a time. The client
retries 429 (honouring ``Retry-After``), 5xx, connection errors and timeouts with backoff,
as for every other call. Each answer is written as a batch output line (``_answer_lines``)
and the lines are read by the batch parser (``collect_results``), so the result columns,
dtypes, statuses, error codes, structured-output checks and retry rounds are batch mode's.

Sync mode costs what the synchronous API costs (twice the Batch API's price on Netmind and
OpenAI) and keeps no journal: nothing is left running to reattach to, and re-running the
call sends every row again.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pyarrow as pa
from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

from ..build._requests import RequestPlan
from ..build._source import Source, chunk_rows_for
from ..results._answer_lines import answer_line, is_success, no_answer_line
from ..results._embeddings import collect_embeddings
from ..results._results import ShardOutcome, collect_results
from ..results._structured import check_answers
from ..transport._connection import Connection
from ._job import joined_output, replace_rows, retryable_rows
from ._options import JobOptions
from ._output import write_result

log = logging.getLogger("netmind_frames")

__all__ = ["SyncRun", "post_line"]

_BODY = b',"body":'


def request_body(line: bytes) -> bytes:
    """The exact bytes of a request line's ``body`` (the plan writes it last)."""
    start = line.find(_BODY)
    end = line.rstrip().rfind(b"}")
    if start < 0 or end <= start:
        return orjson.dumps(orjson.loads(line)["body"])
    return line[start + len(_BODY) : end]


def post_line(client: openai.OpenAI, line: bytes) -> tuple[bytes, bool]:
    """Send one request line to its synchronous endpoint; return its output line and whether
    it is a success. HTTP errors after the client's retries become error lines, not raises."""
    req = orjson.loads(line)
    cid = req["custom_id"]
    path = "/" + str(req["url"]).removeprefix("/v1/").lstrip("/")
    body = request_body(line)
    try:
        response = client.post(
            path,
            cast_to=httpx2.Response,
            content=body,
            options={"headers": {"Content-Type": "application/json"}},
        )
        status, content = response.status_code, response.content
        request_id = response.headers.get("x-request-id")
    except openai.APIStatusError as exc:
        status, content, request_id = exc.status_code, exc.response.content, exc.request_id
    except openai.APITimeoutError as exc:
        return no_answer_line(cid, "timeout", f"The request timed out: {exc}"), False
    except openai.APIConnectionError as exc:
        return no_answer_line(cid, "connection", f"No answer: {exc}"), False
    out = answer_line(cid, status, content, request_id)
    return out, is_success(orjson.loads(out)["response"]["status_code"])


class SyncRun:
    """One call's rows answered through the synchronous endpoint.

    ``result()`` gives the frame batch mode would give; ``to_parquet(path)`` writes it (a
    file input is read and written chunk by chunk).
    """

    def __init__(
        self,
        connection: Connection,
        options: JobOptions,
        source: Source,
        *,
        max_concurrency: int = 8,
        progress: bool = True,
    ) -> None:
        self._client = connection.client
        self._options = options
        self._source = source
        self._max_concurrency = max_concurrency
        self._progress = progress
        self._chunk_rows = chunk_rows_for(options.max_requests, options.chunk_rows)

    def result(self) -> Any:
        """Send every row, retry rows that failed for a retryable reason (up to ``retries``
        rounds), and return a new frame: the input's columns plus the result columns."""
        tables = self._chunk_results
        results = pa.concat_tables(tables) if tables else None
        assert results is not None
        provenance = {"mode": "sync"}
        return joined_output(self._source, self._chunk_rows, results, self._options, provenance)

    def to_parquet(
        self,
        path: str | Path,
        *,
        dataset: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """Like ``result()``, written to a Parquet file (or, with ``dataset=True``, a
        directory of part files; ``path`` may be a URL, as for ``BatchJob.to_parquet``);
        return the count of each status."""
        return write_result(
            path,
            self._source,
            self._chunk_rows,
            lambda number: self._chunk_results[number],
            self._options,
            self.result,
            dataset=dataset,
            storage_options=storage_options,
        )

    @cached_property
    def _chunk_results(self) -> list[pa.Table]:
        """Each chunk's result table; the rows are sent once, however often they are asked for."""
        return list(self._tables())

    # -- running ---------------------------------------------------------------------------

    def _tables(self) -> Iterator[pa.Table]:
        """Each chunk's result table, retry rounds done."""
        for start, frame in self._source.frames(self._chunk_rows, self._options.columns):
            table = self._answer(self._options.build(frame, start), "netmind sync")
            for number in range(1, self._options.retries + 1):
                positions = retryable_rows(table)
                if not len(positions):
                    break
                plan = self._options.build(frame.iloc[positions], start)
                table = replace_rows(table, positions, self._answer(plan, f"retry {number}"))
            yield table

    def _answer(self, plan: RequestPlan, label: str) -> pa.Table:
        shards = [[x for x in s.data.split(b"\n") if x.strip()] for s in plan.shards]
        answers: list[list[tuple[bytes, bool] | None]] = [[None] * len(s) for s in shards]
        total = sum(len(s) for s in shards)
        with (
            tqdm(total=total, unit="req", desc=label, disable=not self._progress) as bar,
            ThreadPoolExecutor(self._max_concurrency, "netmind-frames-sync") as pool,
        ):
            futures: dict[Future[tuple[bytes, bool]], tuple[int, int]] = {
                pool.submit(post_line, self._client, line): (i, j)
                for i, lines in enumerate(shards)
                for j, line in enumerate(lines)
            }
            try:
                _drain(futures, answers, bar.update)
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                log.warning(
                    "Interrupted: sync mode keeps nothing running (requests in flight finish "
                    "and are dropped); run the call again to send the rows again."
                )
                raise
        outcomes = []
        for shard, lines in zip(plan.shards, answers, strict=True):
            done = [a for a in lines if a is not None]
            out = b"".join(line for line, ok in done if ok)
            err = b"".join(line for line, ok in done if not ok)
            files = [f for f in (out, err) if f]
            outcomes.append(ShardOutcome(shard.positions, "completed", files))
        table = self._collect(plan, outcomes)
        spec = self._options.output
        return check_answers(table, spec) if spec is not None else table

    def _collect(self, plan: RequestPlan, outcomes: list[ShardOutcome]) -> pa.Table:
        if self._options.embed_column is not None:
            return collect_embeddings(plan, outcomes)
        return collect_results(plan, outcomes)


def _drain(
    futures: dict[Future[tuple[bytes, bool]], tuple[int, int]],
    answers: list[list[tuple[bytes, bool] | None]],
    advance: Callable[[int], Any],
) -> None:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            i, j = futures[future]
            answers[i][j] = future.result()
        if done:
            advance(len(done))
