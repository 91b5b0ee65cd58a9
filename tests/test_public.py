"""The public surface: a sorted __all__, and an accessor that mirrors the functions exactly."""

from __future__ import annotations

import inspect

import pytest

import netmind_frames
from netmind_frames.frames import _api
from netmind_frames.frames._accessor import NetmindAccessor


def test_all_is_sorted_and_importable():
    assert netmind_frames.__all__ == sorted(netmind_frames.__all__)
    for name in netmind_frames.__all__:
        assert getattr(netmind_frames, name) is not None


@pytest.mark.parametrize(
    "name", ["batch_complete", "batch_embed", "estimate", "submit", "to_jsonl"]
)
def test_accessor_methods_have_the_functions_signatures(name):
    function = inspect.signature(getattr(_api, name))
    method = inspect.signature(getattr(NetmindAccessor, name))
    assert list(function.parameters.values())[1:] == list(method.parameters.values())[1:]
    assert function.return_annotation == method.return_annotation


@pytest.mark.parametrize("name", netmind_frames.__all__)
def test_public_names_have_docstrings(name):
    if name == "__version__":
        return
    assert inspect.getdoc(getattr(netmind_frames, name))


#: The public surface users import. Moving or renaming any of these breaks user code.
PUBLIC = [
    "BatchFailedError",
    "BatchJob",
    "ColumnError",
    "ConfigurationError",
    "FileTransferError",
    "InputError",
    "JobTimeoutError",
    "LocalBatchServer",
    "MissingResultWarning",
    "NetmindFramesError",
    "RowError",
    "SubmissionUnknownError",
    "__version__",
    "attach",
    "batch_complete",
    "batch_complete_file",
    "batch_embed",
    "doctor",
    "estimate",
    "submit",
    "to_jsonl",
]


def test_public_names_stay_where_users_import_them():
    import pandas as pd

    from netmind_frames.cli import main
    from netmind_frames.server import LocalBatchServer

    assert netmind_frames.__all__ == PUBLIC
    assert netmind_frames.LocalBatchServer is LocalBatchServer
    assert callable(main) and callable(netmind_frames.BatchJob.attach)
    accessor = pd.DataFrame({"a": ["x"]}).netmind
    for method in ("batch_complete", "batch_embed", "estimate", "submit", "to_jsonl"):
        assert callable(getattr(accessor, method))
