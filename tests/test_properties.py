"""Property tests of contracts 1-3: random frames crossed with server behaviour.

Each example builds a frame (index of any kind, prompts full of unicode, emoji, quotes,
backslashes, newlines and empty strings, 1 to a few thousand rows), runs it through a real
local server that shuffles its output, fails some requests, expires or is cancelled mid-way,
over several shards, and checks: the same length, order and index; the input columns
untouched; exactly one known status per row; every ``ok`` answer is its own row's prompt
(the echo engine answers with the prompt); and per batch, the rows' statuses reconcile with
the batch's ``request_counts``.

``NETMIND_FRAMES_SOAK=1`` runs many more examples (``pytest -m soak``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import netmind_frames
from netmind_frames import LocalBatchServer

SOAK = bool(os.environ.get("NETMIND_FRAMES_SOAK"))
STATUSES = {"ok", "failed", "expired", "cancelled"}
#: Codes of rows that ran and failed (counted in ``request_counts.failed``).
NOT_RUN = {"batch_expired", "batch_cancelled"}
#: What the examples checked, printed at the end of the module (``pytest -s``).
TALLY: Counter[str] = Counter()


def examples(n: int) -> Any:
    """Hypothesis settings: ``n`` examples (ten times more under soak), no deadline."""
    return settings(
        max_examples=n * 10 if SOAK else n,
        deadline=None,
        database=None,  # no .hypothesis/ folder in the work tree
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # the per-test journal fixture; see _home
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# -- strategies -------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\n",
    "line one\nline two\r\nline three",
    "she said \"hi\" and 'bye'",
    "back\\slash \\n not a newline \\u0041",
    "tab\tseparated\tvalues",
    "emoji 😀👍🏽 🇫🇷 family 👨‍👩‍👧",
    "ünïcödé ñ 日本語 العربية עברית",
    "{not a field} {{braces}}",
    '{"json": "inside", "n": [1, 2]}',
    "zero\x00width\u200bjoiner\u200d",
    "a" * 300,
]

texts = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
sizes = st.one_of(st.integers(1, 60), st.integers(61, 2500))


@st.composite
def frames(draw: st.DrawFn, *, max_rows: int | None = None) -> pd.DataFrame:
    """A frame with ``tag`` (a unique id), ``text`` (nasty strings) and ``x`` columns."""
    n = draw(sizes if max_rows is None else st.integers(1, max_rows))
    pool = draw(st.lists(texts, min_size=1, max_size=12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    text = [pool[i] for i in rng.integers(0, len(pool), n)]
    # Unique and shuffled, so an answer joined to the wrong row cannot go unnoticed.
    tag = [f"#{i}" for i in rng.permutation(n)]
    index = draw(index_kinds)(n, rng)
    return pd.DataFrame({"tag": tag, "text": text, "x": np.arange(n)}, index=index)


def _range(n: int, rng: np.random.Generator) -> pd.Index:
    start, step = int(rng.integers(-5, 5)), int(rng.integers(1, 4))
    return pd.RangeIndex(start, start + n * step, step)


def _shuffled_ints(n: int, rng: np.random.Generator) -> pd.Index:
    return pd.Index(rng.permutation(n) * 7 - 3)


def _duplicate_strings(n: int, rng: np.random.Generator) -> pd.Index:
    return pd.Index(rng.choice(["a", "b", "é", "🙂", ""], n), name="key")


def _datetimes(n: int, rng: np.random.Generator) -> pd.Index:
    stamps = pd.date_range("2026-01-01", periods=n, freq="37min", tz="Europe/Paris")
    return pd.DatetimeIndex(stamps[rng.integers(0, n, n)], name="when")  # shuffled, repeated


def _multiindex(n: int, rng: np.random.Generator) -> pd.Index:
    return pd.MultiIndex.from_arrays(
        [rng.choice(["x", "y"], n), rng.integers(0, 3, n)], names=["outer", "inner"]
    )


index_kinds = st.sampled_from([_range, _shuffled_ints, _duplicate_strings, _datetimes, _multiindex])
prompt_modes = st.sampled_from(["template", "column"])


# -- the checks -------------------------------------------------------------------------------


def expected_answers(frame: pd.DataFrame, mode: str) -> list[str]:
    """The echo engine's answer of each row: its prompt, exactly."""
    if mode == "column":
        return list(frame["text"])
    return [f"{tag}|{text}" for tag, text in zip(frame["tag"], frame["text"], strict=True)]


def run_kwargs(frame: pd.DataFrame, mode: str) -> dict[str, Any]:
    """``prompt=`` or ``prompt_column=``; a column-mode prompt carries the row's tag too."""
    if mode == "column":
        tagged = zip(frame["tag"], frame["text"], strict=True)
        frame["text"] = [f"{t}|{x}" if x else x for t, x in tagged]
        return {"prompt_column": "text"}
    return {"prompt": "{tag}|{text}"}


def check_contracts(
    frame: pd.DataFrame,
    before: pd.DataFrame,
    out: pd.DataFrame,
    expected: list[str],
) -> np.ndarray:
    """Contracts 1 and 2 on one result; returns the status of each row."""
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert len(out) == len(frame)
    assert out.index.equals(frame.index) and out.index.dtype == frame.index.dtype
    assert out.index.names == frame.index.names
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)
    status = out["status"].to_numpy(dtype=object)
    assert set(status) <= STATUSES and not out["status"].isna().any()
    ok = status == "ok"
    response = out["response"].to_numpy(dtype=object)
    wrong = [i for i in np.flatnonzero(ok) if response[i] != expected[i]]
    assert not wrong, f"{len(wrong)} ok rows hold another row's answer, e.g. row {wrong[0]}"
    assert out.loc[~ok, "response"].isna().all()
    assert out.loc[~ok, "error_code"].notna().all() and out.loc[ok, "error_code"].isna().all()
    codes = out["error_code"].to_numpy(dtype=object)
    assert all(codes[i] == "batch_expired" for i in np.flatnonzero(status == "expired"))
    assert all(codes[i] == "batch_cancelled" for i in np.flatnonzero(status == "cancelled"))
    event(f"statuses: {', '.join(sorted(set(status)))}")
    TALLY["examples"] += 1
    TALLY["rows"] += len(frame)
    TALLY.update(status)
    event(f"rows: {'1' if len(frame) == 1 else '2-60' if len(frame) <= 60 else '61+'}")
    event(f"index: {type(frame.index).__name__}")
    return status


def reconcile(
    client: openai.OpenAI, batch_ids: tuple[str, ...], out: pd.DataFrame, n_rows: int
) -> int:
    """Each first-round batch's ``request_counts`` against the statuses of the rows in its
    input file (default custom_ids are row positions); returns the rows no batch holds."""
    status = out["status"].to_numpy(dtype=object)
    codes = out["error_code"].fillna("").to_numpy(dtype=object)
    seen = np.zeros(n_rows, dtype=np.int64)
    for batch_id in batch_ids:
        batch = client.batches.retrieve(batch_id)
        lines = client.files.content(batch.input_file_id).content.splitlines()
        rows = np.array([int(orjson.loads(line)["custom_id"]) for line in lines])
        seen[rows] += 1
        counts = batch.request_counts
        ran_failed = (status[rows] == "failed") & ~np.isin(codes[rows], list(NOT_RUN))
        assert counts.total == len(rows), batch_id
        assert counts.completed == int(np.count_nonzero(status[rows] == "ok")), batch_id
        assert counts.failed == int(np.count_nonzero(ran_failed)), batch_id
    assert seen.max(initial=0) <= 1, "a row was sent in two first-round batches"
    unsent = np.flatnonzero(seen == 0)
    assert (status[unsent] == "cancelled").all(), "a row in no batch must be cancelled"
    return len(unsent)


class Home:
    """A fresh ``NETMIND_FRAMES_HOME`` for one example (the autouse fixture is per test)."""

    def __enter__(self) -> None:
        self._previous = os.environ.get("NETMIND_FRAMES_HOME")
        self._dir = tempfile.TemporaryDirectory(prefix="nmf-prop-")
        os.environ["NETMIND_FRAMES_HOME"] = self._dir.name

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            os.environ["NETMIND_FRAMES_HOME"] = self._previous
        self._dir.cleanup()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nproperty examples: {dict(TALLY)}")


# -- servers (one per behaviour, shared by the examples) --------------------------------------


@pytest.fixture(scope="module")
def failing_server() -> Iterator[LocalBatchServer]:
    """Immediate, shuffled output, a quarter of the requests end as 500 lines."""
    with LocalBatchServer(fail_rate=0.25, seed=11) as srv:
        yield srv


@pytest.fixture(scope="module")
def expiring_server() -> Iterator[LocalBatchServer]:
    """Paced, so that batches of more than ~30 requests expire part-way."""
    with LocalBatchServer(seconds_per_request=0.003, expire_after=0.1, fail_rate=0.1) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_server() -> Iterator[LocalBatchServer]:
    """Paced, so that a job can be cancelled while it runs."""
    with LocalBatchServer(seconds_per_request=0.0015, fail_rate=0.05, seed=3) as srv:
        yield srv


def client_of(srv: LocalBatchServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key)


def connection(srv: LocalBatchServer, dialect: str) -> dict[str, Any]:
    base_url = srv.base_url if dialect == "netmind" else srv.openai_base_url
    # keep_files: reconcile() reads each batch's input file back after the result.
    return {
        "base_url": base_url,
        "api_key": srv.api_key,
        "poll_interval": 0.02,
        "progress": False,
        "keep_files": True,
    }


dialects = st.sampled_from(["netmind", "openai"])
shard_counts = st.integers(1, 5)


def max_requests_for(n: int, shards: int) -> int:
    return max(1, -(-n // shards))


# -- the properties ---------------------------------------------------------------------------


@examples(25)
@given(frame=frames(), mode=prompt_modes, shards=shard_counts, dialect=dialects)
def test_shuffled_failing_sharded_runs_keep_every_row(failing_server, frame, mode, shards, dialect):
    """Shuffled output, 25% failed requests, up to 5 shards: contracts 1-3 and the counts."""
    kwargs = run_kwargs(frame, mode)
    before = frame.copy(deep=True)
    with Home(), client_of(failing_server) as client:
        job = netmind_frames.submit(
            frame,
            model="m",
            max_requests=max_requests_for(len(frame), shards),
            retries=0,
            **kwargs,
            **connection(failing_server, dialect),
        )
        out = job.result()
        status = check_contracts(frame, before, out, expected_answers(frame, mode))
        assert set(status) <= {"ok", "failed"}
        assert reconcile(client, job.batch_ids, out, len(frame)) == 0
    assert len(job.batch_ids) == -(-len(frame) // max_requests_for(len(frame), shards))


@examples(10)
@given(frame=frames(), mode=prompt_modes, shards=shard_counts)
def test_retried_rows_keep_their_answers(failing_server, frame, mode, shards):
    """With retry rounds, every row still gets one result, and ok answers are their own."""
    kwargs = run_kwargs(frame, mode)
    before = frame.copy(deep=True)
    with Home(), client_of(failing_server) as client:
        job = netmind_frames.submit(
            frame,
            model="m",
            max_requests=max_requests_for(len(frame), shards),
            # Five tries: a row fails them all with p = 0.25**5 = 1/1024, so the bound below
            # holds in all but ~1e-7 of examples (with three tries, ~1e-3 on 30-row frames).
            retries=4,
            **kwargs,
            **connection(failing_server, "netmind"),
        )
        out = job.result()
        status = check_contracts(frame, before, out, expected_answers(frame, mode))
        batches = [client.batches.retrieve(b) for b in (*job.batch_ids, *job.retry_batch_ids)]
    # A row is re-sent only while it has no answer: each ok row has exactly one ok line.
    assert sum(b.request_counts.completed for b in batches) == np.count_nonzero(status == "ok")
    # 25% failures, five tries: far fewer failed rows than a single try leaves.
    assert np.count_nonzero(status == "failed") <= max(3, 0.1 * len(frame))


@examples(15)
@given(frame=frames(), mode=prompt_modes, shards=shard_counts, dialect=dialects)
def test_expiring_batches_keep_every_row(expiring_server, frame, mode, shards, dialect):
    """Batches that expire part-way: finished rows keep answers, the rest are ``expired``."""
    kwargs = run_kwargs(frame, mode)
    before = frame.copy(deep=True)
    with Home(), client_of(expiring_server) as client:
        job = netmind_frames.submit(
            frame,
            model="m",
            max_requests=max_requests_for(len(frame), shards),
            retries=0,
            **kwargs,
            **connection(expiring_server, dialect),
        )
        out = job.result()
        check_contracts(frame, before, out, expected_answers(frame, mode))
        assert reconcile(client, job.batch_ids, out, len(frame)) == 0


@examples(15)
@given(
    frame=frames(),
    mode=prompt_modes,
    shards=shard_counts,
    concurrent=st.integers(1, 3),
    after=st.floats(0, 0.3),
)
def test_cancelled_jobs_keep_every_row(slow_server, frame, mode, shards, concurrent, after):
    """Cancelled at a random moment, some shards maybe never submitted: every row still has
    one status, finished rows keep their answers, unsent rows are ``cancelled``."""
    kwargs = run_kwargs(frame, mode)
    before = frame.copy(deep=True)
    with Home(), client_of(slow_server) as client:
        job = netmind_frames.submit(
            frame,
            model="m",
            max_requests=max_requests_for(len(frame), shards),
            max_concurrent_batches=concurrent,
            retries=0,
            **kwargs,
            **connection(slow_server, "netmind"),
        )
        time.sleep(after)  # the first shards run meanwhile; the others wait for a slot
        job.cancel()
        out = job.result()
        check_contracts(frame, before, out, expected_answers(frame, mode))
        reconcile(client, job.batch_ids, out, len(frame))
