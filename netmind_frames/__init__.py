"""netmind_frames: run an LLM over every row of a DataFrame through a Batch API.

Importing the package registers the ``df.netmind`` accessor on pandas, and on Polars
DataFrames and LazyFrames (when pandas or Polars is imported, before or after); the functions
also take a ``pyarrow.Table``::

    import netmind_frames

    out = df.netmind.batch_complete("Summarise: {text}", model="...", local=True)
"""

from __future__ import annotations

import importlib
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
from .frames import _register  # noqa: F401  (df.netmind, once pandas or Polars is imported)

if TYPE_CHECKING:
    from .frames._api import attach, batch_complete, batch_embed, estimate, submit, to_jsonl
    from .frames._files import batch_complete_file
    from .jobs._doctor import doctor
    from .jobs._job import BatchJob
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
    "batch_complete_file",
    "batch_embed",
    "doctor",
    "estimate",
    "submit",
    "to_jsonl",
]

#: Public names imported on first use, and the module of each. They pull in pandas, pyarrow
#: and openai (about a second), which the CLI's quick commands (`--help`, `list`) never need;
#: the local server also needs the optional extra [local].
_LAZY = {
    "BatchJob": ".jobs._job",
    "LocalBatchServer": ".server",
    "attach": ".frames._api",
    "batch_complete": ".frames._api",
    "batch_complete_file": ".frames._files",
    "batch_embed": ".frames._api",
    "doctor": ".jobs._doctor",
    "estimate": ".frames._api",
    "submit": ".frames._api",
    "to_jsonl": ".frames._api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
