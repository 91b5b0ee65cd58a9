"""Bad input fails before anything is uploaded (contract 8), through every public entry point.

``test_api.py`` checks each invalid input of contract 8 once, through ``batch_complete``;
this module crosses them with ``submit``, ``batch_embed``, ``to_jsonl`` and the accessor,
and adds a wrong type for every public argument. Each case must raise a clear error (a
``NetmindFramesError``, which is also a ``ValueError``) naming the argument, column or row,
while the server's file and batch lists stay unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pandas as pd
import pytest
from conftest import uploaded_files

import netmind_frames
from netmind_frames import LocalBatchServer, NetmindFramesError


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[LocalBatchServer]:
    """A server of this module's own: nothing may ever reach it."""
    with LocalBatchServer(seed=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def lister(quiet_server: LocalBatchServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=quiet_server.origin) as http:
        yield http


@pytest.fixture
def nothing_uploaded(
    quiet_server: LocalBatchServer, lister: httpx2.Client
) -> Iterator[LocalBatchServer]:
    """Check, after the test, that the server holds no file and no batch."""
    yield quiet_server
    assert lister.get("/v1/files").json() == []
    assert lister.get("/v1/batches").json()["data"] == []


def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": ["a", "b", "c"], "n": [1, 2, 3]})


def connection(srv: LocalBatchServer) -> dict[str, Any]:
    return {"base_url": srv.base_url, "api_key": srv.api_key, "progress": False}


ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "batch_complete": netmind_frames.batch_complete,
    "submit": netmind_frames.submit,
    "accessor": lambda df, *a, **kw: df.netmind.batch_complete(*a, **kw),
}

#: (argument, bad value, words the error must contain). Each replaces one keyword of a
#: valid call ``f(frame, "{text}", model="m", ...)``.
WRONG_TYPES = [
    ("prompt", 3, "prompt"),
    ("prompt", ["{text}"], "prompt"),
    ("model", ["x"], "model"),
    ("model", 3, "model"),
    ("model", "", "model"),
    ("max_requests", "10", "max_requests"),
    ("max_requests", 0, "max_requests"),
    ("max_requests", 2.5, "max_requests"),
    ("max_bytes", "1", "max_bytes"),
    ("max_bytes", -1, "max_bytes"),
    ("retries", -1, "retries"),
    ("retries", "2", "retries"),
    ("retries", 1.5, "retries"),
    ("prefix", None, "prefix"),
    ("prefix", 3, "prefix"),
    ("metadata", "x", "metadata"),
    ("metadata", {"a": 1}, "metadata"),
    ("metadata", {f"k{i}": "v" for i in range(15)}, "metadata"),
    ("poll_interval", -1, "poll_interval"),
    ("poll_interval", 0, "poll_interval"),
    ("poll_interval", "x", "poll_interval"),
    ("system", 3, "system"),
    ("prompt_column", 3, "3"),
    ("messages_column", 3, "3"),
    ("custom_id_column", 3, "3"),
    ("model_column", 3, "3"),
    ("params_column", 3, "3"),
    ("schema", 3, "schema"),
    ("schema", "x", "schema"),
    ("provider", "x", "provider"),
    ("provider", 3, "provider"),
    ("api_key", 3, "api_key"),
    ("base_url", 3, "base_url"),
    ("client", "x", "client"),
    ("local", "yes", "local"),
    ("completion_window", "1h", "completion_window"),
    ("completion_window", 24, "completion_window"),
    ("resubmit", "no", "resubmit"),
    ("progress", "no", "progress"),
    ("max_concurrent_batches", 0, "max_concurrent_batches"),
    ("max_concurrent_batches", "2", "max_concurrent_batches"),
    ("vendor_option", object(), "JSON"),
    ("temperature", "hot", "number from 0 to 2"),
    ("max_token", 5, "did you mean 'max_tokens'"),
    ("messages", [], "messages"),
]
#: Arguments that need a column or prompt mode of their own to be reached.
_NO_PROMPT = {"prompt_column", "messages_column"}
_LOCAL_ONLY = {"local"}


def _call(entry: Callable[..., Any], srv: LocalBatchServer, name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"model": "m", **connection(srv)}
    prompt: Any = "{text}"
    if name == "prompt":
        prompt = value
    elif name in _NO_PROMPT:
        prompt = None
        kwargs[name] = value
    else:
        kwargs[name] = value
    if name in _LOCAL_ONLY or name == "client":
        del kwargs["base_url"]
    entry(frame(), prompt, **kwargs)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [pytest.param(n, v, k, id=f"{n}={v!r}"[:40]) for n, v, k in WRONG_TYPES],
)
def test_a_wrong_argument_is_a_clear_error_and_uploads_nothing(
    nothing_uploaded, entry, name, value, needle
):
    with pytest.raises(NetmindFramesError) as info:
        _call(ENTRY_POINTS[entry], nothing_uploaded, name, value)
    assert isinstance(info.value, (ValueError, TypeError))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param("soon", "timeout", id="str"),
        pytest.param(-1, "timeout", id="negative"),
        pytest.param(float("nan"), "timeout", id="nan"),
    ],
)
@pytest.mark.parametrize("entry", ["batch_complete", "batch_embed"])
def test_a_bad_timeout_fails_before_uploading(nothing_uploaded, entry, value, needle):
    call = {
        "batch_complete": lambda: netmind_frames.batch_complete(
            frame(), "{text}", model="m", timeout=value, **connection(nothing_uploaded)
        ),
        "batch_embed": lambda: netmind_frames.batch_embed(
            frame(), "text", model="e", timeout=value, **connection(nothing_uploaded)
        ),
    }[entry]
    with pytest.raises(NetmindFramesError, match=needle):
        call()


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        pytest.param(None, "DataFrame", id="none"),
        pytest.param([{"text": "a"}], "DataFrame", id="list"),
        pytest.param(pd.Series(["a"], name="text"), "DataFrame", id="series"),
        pytest.param("in.parquet", "DataFrame", id="path"),
    ],
)
@pytest.mark.parametrize("entry", ["batch_complete", "submit", "batch_embed"])
def test_not_a_frame_is_a_clear_error(nothing_uploaded, entry, bad, needle):
    call = {
        "batch_complete": lambda: netmind_frames.batch_complete(
            bad, "{text}", model="m", **connection(nothing_uploaded)
        ),
        "submit": lambda: netmind_frames.submit(
            bad, "{text}", model="m", **connection(nothing_uploaded)
        ),
        "batch_embed": lambda: netmind_frames.batch_embed(
            bad, "text", model="e", **connection(nothing_uploaded)
        ),
    }[entry]
    with pytest.raises(NetmindFramesError, match=needle):
        call()


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        pytest.param("column", 3, "column", id="column-int"),
        pytest.param("column", "missing", "missing", id="column-missing"),
        pytest.param("model", ["e"], "model", id="model-list"),
        pytest.param("max_requests", "5", "max_requests", id="max-requests-str"),
        pytest.param("retries", -1, "retries", id="retries"),
        pytest.param("prefix", None, "prefix", id="prefix"),
        pytest.param("metadata", "x", "metadata", id="metadata"),
        pytest.param("poll_interval", -1, "poll_interval", id="poll-interval"),
        pytest.param("completion_window", "1h", "completion_window", id="window"),
        pytest.param("max_concurrent_batches", 0, "max_concurrent_batches", id="concurrent"),
    ],
)
def test_batch_embed_wrong_arguments(nothing_uploaded, name, value, needle):
    # OpenAI's dialect: on Netmind's, batch_embed stops earlier (no embedding batches there).
    openai_dialect = {"base_url": nothing_uploaded.openai_base_url}
    kwargs: dict[str, Any] = {"column": "text", "model": "e", **connection(nothing_uploaded)}
    kwargs.update(openai_dialect)
    kwargs[name] = value
    with pytest.raises(NetmindFramesError) as info:
        netmind_frames.batch_embed(frame(), **kwargs)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        pytest.param("prompt", 3, "prompt", id="prompt"),
        pytest.param("model", None, "model", id="no-model"),
        pytest.param("model", ["x"], "model", id="model-list"),
        pytest.param("provider", "x", "provider", id="provider"),
        pytest.param("max_requests", "10", "max_requests", id="max-requests"),
        pytest.param("max_bytes", 0, "max_bytes", id="max-bytes"),
        pytest.param("system", 3, "system", id="system"),
        pytest.param("prompt_column", "nope", "nope", id="prompt-column"),
        pytest.param("schema", "x", "schema", id="schema"),
    ],
)
def test_to_jsonl_wrong_arguments(tmp_path, name, value, needle):
    kwargs: dict[str, Any] = {"prompt": "{text}", "model": "m", name: value}
    if name == "prompt_column":
        kwargs["prompt"] = None
    with pytest.raises(NetmindFramesError) as info:
        netmind_frames.to_jsonl(frame(), tmp_path / "x.jsonl", **kwargs)
    assert needle in str(info.value)
    assert not (tmp_path / "x.jsonl").exists()


# -- contract 8 through every entry point ----------------------------------------------------

CONTRACT_8 = [
    pytest.param(pd.DataFrame({"t": ["x"]}), {"prompt": "{text}"}, "text", id="missing-column"),
    pytest.param(pd.DataFrame({"text": ["x", None]}), {"prompt": "{text}"}, "1", id="null"),
    pytest.param(
        pd.DataFrame({"text": ["x", 3]}, dtype=object),
        {"prompt": None, "prompt_column": "text"},
        "1",
        id="non-string",
    ),
    pytest.param(
        pd.DataFrame({"text": ["x", float("nan")]}, dtype=object),
        {"prompt": None, "prompt_column": "text"},
        "1",
        id="nan-prompt",
    ),
    pytest.param(pd.DataFrame({"text": []}), {"prompt": "{text}"}, "empty", id="empty"),
    pytest.param(
        pd.DataFrame({"text": ["a", "b"], "u": ["x", "x"]}),
        {"prompt": "{text}", "custom_id_column": "u"},
        "x",
        id="duplicate-ids",
    ),
    pytest.param(
        pd.DataFrame({"text": ["a", "b" * 5000]}),
        {"prompt": "{text}", "max_bytes": 2000},
        "1",
        id="line-over-limit",
    ),
    pytest.param(
        pd.DataFrame({"text": ["a"]}),
        {"prompt": "{text}", "completion_window": "48h"},
        "24h",
        id="window",
    ),
    pytest.param(
        pd.DataFrame({"text": ["a"]}), {"prompt": "{text"}, "template", id="broken-template"
    ),
    pytest.param(pd.DataFrame({"text": ["a"]}), {"prompt": "{0}"}, "0", id="positional-field"),
    pytest.param(
        pd.DataFrame({"text": ["a"], "m": [[{"role": "user"}]]}),
        {"prompt": None, "messages_column": "m"},
        "content",
        id="message-without-content",
    ),
    pytest.param(
        pd.DataFrame({"text": ["a"], "status": ["s"]}), {"prompt": "{text}"}, "status", id="clash"
    ),
    pytest.param(
        pd.DataFrame({"text": ["a"]}),
        {"prompt": "{text}", "prompt_column": "text"},
        "prompt",
        id="two-prompt-inputs",
    ),
]


@pytest.mark.parametrize("entry", [*ENTRY_POINTS, "to_jsonl"])
@pytest.mark.parametrize(("df", "kwargs", "needle"), CONTRACT_8)
def test_contract_8_through_every_entry_point(nothing_uploaded, entry, df, kwargs, needle):
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt")
    window = kwargs.pop("completion_window", None)
    if entry == "to_jsonl":
        if window is not None:
            pytest.skip("to_jsonl has no completion_window")
        if needle == "status":
            pytest.skip("to_jsonl adds no result columns")
        call = lambda: netmind_frames.to_jsonl(df, prompt=prompt, model="m", **kwargs)  # noqa: E731
    else:
        extra = {} if window is None else {"completion_window": window}
        call = lambda: ENTRY_POINTS[entry](  # noqa: E731
            df, prompt, model="m", **kwargs, **extra, **connection(nothing_uploaded)
        )
    with pytest.raises(NetmindFramesError) as info:
        call()
    assert needle in str(info.value)


def test_the_sentinel_server_really_counts_uploads(quiet_server):
    """The ``nothing_uploaded`` check is not vacuous: a good call shows up in the lists."""
    with LocalBatchServer() as srv:
        netmind_frames.batch_complete(frame(), "{text}", model="m", **connection(srv))
        assert len(uploaded_files(srv)) >= 1
        listed = httpx2.get(srv.openai_base_url + "/batches").json()["data"]
        assert len(listed) == 1
