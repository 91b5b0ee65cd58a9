"""The exception tree of netmind_frames.

Every error this library raises on purpose derives from :class:`NetmindFramesError`; where a
builtin fits, the error also subclasses it, so ``except ValueError`` keeps working::

    NetmindFramesError
    ├── ConfigurationError (ValueError)   missing API key, unknown provider, bad setting
    ├── InputError (ValueError)           the frame or the arguments cannot become requests
    │   ├── ColumnError (KeyError)        a named column is missing or collides with a result
    │   └── RowError                      one row is bad: null prompt, line over the byte limit
    ├── FileTransferError                 the File API answered something we cannot use
    ├── BatchFailedError                  a batch ended ``failed`` (carries ``errors``)
    ├── SubmissionUnknownError            cannot tell whether a batch was created: stopped
    └── JobTimeoutError (TimeoutError)    ``timeout=`` passed before the job finished

    MissingResultWarning (UserWarning)    a row got no result line, or a result line was unusable

HTTP errors of the openai SDK (``openai.AuthenticationError``, ``openai.RateLimitError``, ...)
pass through unchanged.
"""

from __future__ import annotations

from typing import Any


class NetmindFramesError(Exception):
    """Base class of every error raised by netmind_frames."""


class ConfigurationError(NetmindFramesError, ValueError):
    """A setting is missing or invalid (API key, base URL, provider, limits)."""


class InputError(NetmindFramesError, ValueError):
    """The frame or the call's arguments cannot be turned into requests."""


class ColumnError(InputError, KeyError):
    """A column is missing, or a result column would overwrite an input column."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


class RowError(InputError):
    """One row cannot become a request; ``position`` is its 0-based position in the frame."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class FileTransferError(NetmindFramesError):
    """An upload or download through the File API failed or returned an unusable answer."""


class BatchFailedError(NetmindFramesError):
    """A batch ended with status ``failed``; ``errors`` holds the server's ``errors.data``."""

    def __init__(self, message: str, batch_id: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.errors = errors


class SubmissionUnknownError(NetmindFramesError):
    """Whether a batch was created for an uploaded file cannot be told, so none is created.

    Raised after a ``batches.create`` whose answer was lost (or when an earlier attempt
    uploaded the shard's file) on a provider whose batch list shows neither ``metadata`` nor
    ``input_file_id``: creating again might pay twice. ``file_ids`` are the uploaded files a
    batch may have been created for; ``resubmit=True`` accepts the risk.
    """

    def __init__(self, message: str, file_ids: list[str]) -> None:
        super().__init__(message)
        self.file_ids = file_ids


class JobTimeoutError(NetmindFramesError, TimeoutError):
    """The job did not finish within ``timeout``; it keeps running and can be reattached."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class MissingResultWarning(UserWarning):
    """A row got no result (reported as ``missing_result``), or a result line was unusable:
    not valid JSON, an unknown ``custom_id``, or a duplicate."""
