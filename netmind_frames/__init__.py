"""netmind_frames: run an LLM over every row of a DataFrame through a Batch API.

Importing the package registers the ``df.netmind`` accessor on pandas, and on Polars
DataFrames and LazyFrames (when Polars is imported, before or after); the functions also take
a ``pyarrow.Table``::

    import netmind_frames

    out = df.netmind.batch_complete("Summarise: {text}", model="...", local=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    BatchFailedError,
    ColumnError,
    ConfigurationError,
    FileTransferError,
    InputError,
    JobTimeoutError,
    MissingResultWarning,
    NetmindFramesError,
    RowError,
    SubmissionUnknownError,
)
from .frames import (
    _accessor,  # noqa: F401  (registers df.netmind)
    _register,  # noqa: F401  (pl.DataFrame.netmind, once Polars is imported)
)
from .frames._api import attach, batch_complete, batch_embed, estimate, submit, to_jsonl
from .jobs._doctor import doctor
from .jobs._job import BatchJob

if TYPE_CHECKING:
    from .server import LocalBatchServer

__version__ = "0.1.0.dev0"

__all__ = [
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
    "batch_embed",
    "doctor",
    "estimate",
    "submit",
    "to_jsonl",
]


def __getattr__(name: str) -> Any:
    # The local server needs the optional extra [local]; import it only when asked for.
    if name == "LocalBatchServer":
        from .server import LocalBatchServer

        return LocalBatchServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
