"""How batch objects are shown: the unknowns of Netmind's live service, switched on by knobs.

No public source says whether Netmind stores and echoes a batch's ``metadata`` (or its
``input_file_id``: the guide's create answer shows it null), what its create
call answers beyond the guide's example, or which statuses a batch passes through before it
runs (batch-api.md §5.0, §5.2b). The client must cope with each; these knobs let the tests and
``netmind-frames doctor`` show that it does. They change only what is *shown*: the batch itself
runs as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The create answer of Netmind's batch guide, verbatim in shape (batch-api.md §5.0).
_GUIDE_CREATE_NULLS = (
    "errors",
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "metadata",
)


@dataclass
class Quirks:
    """The knobs, and the per-batch count of retrieves that ``queued_polls`` needs."""

    echo_metadata: bool = True
    """False: ``metadata`` is accepted but every answer shows it as null."""
    echo_input_file_id: bool = True
    """False: list and retrieve answers show ``input_file_id`` as null (the batch still reads
    its file)."""
    netmind_create_answer: bool = False
    """True: ``POST .../batches`` answers as the guide's example (status ``pending``, empty
    ``endpoint`` and ``completion_window``, null ids and times)."""
    queued_polls: int = 0
    """The first N retrieves of each batch answer status ``queued_status``, whatever its state."""
    queued_status: str = "pending"
    _retrieves: dict[str, int] = field(default_factory=dict, repr=False)

    def created(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The answer to a create."""
        if not self.netmind_create_answer:
            return self._echo(obj)
        answer = {**obj, "endpoint": "", "completion_window": "", "status": "pending"}
        answer.update(dict.fromkeys(_GUIDE_CREATE_NULLS))
        answer["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        return answer

    def retrieved(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The answer to a retrieve (counted for ``queued_polls``)."""
        seen = self._retrieves.get(obj["id"], 0)
        self._retrieves[obj["id"]] = seen + 1
        if seen < self.queued_polls:
            obj = {**obj, "status": self.queued_status}
        return self._echo_file(self._echo(obj))

    def listed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A batch as a list shows it."""
        return self._echo_file(self._echo(obj))

    def _echo(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj if self.echo_metadata else {**obj, "metadata": None}

    def _echo_file(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj if self.echo_input_file_id else {**obj, "input_file_id": None}
