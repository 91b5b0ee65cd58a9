"""What the route handlers share: the store, the runner and the server's settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from starlette.requests import Request

from ._hooks import CallLog
from ._quirks import Quirks
from ._runner import Runner
from ._store import Store
from ._upstream import Upstream


@dataclass(frozen=True)
class Context:
    """Per-server state handed to every route through ``app.state.ctx``."""

    store: Store
    runner: Runner
    secret: bytes
    presigned_ttl: float
    expire_after: float | None
    seed: int
    shuffle: bool
    endpoints: frozenset[str] = frozenset({"/v1/chat/completions", "/v1/embeddings"})
    """The batch endpoints this server accepts (others: 400 at batch create)."""
    corrupt_rate: float = 0.0
    """Fraction of json_schema chat answers replaced by broken JSON (see ``_engine``)."""
    sync_calls: itertools.count[int] = field(default_factory=itertools.count, compare=False)
    """Numbers the synchronous calls, for their seeded ``corrupt_rate`` draw."""
    upstream: Upstream | None = None
    """Where the synchronous endpoints forward calls (a batch gateway); None: echo engine."""
    sync_log: CallLog | None = None
    """Where synchronous calls are recorded (the ``sync_calls()`` test hook); None: not."""
    quirks: Quirks = field(default_factory=Quirks)
    """How batch objects are shown (Netmind's unknowns, see ``_quirks``)."""
    netmind_embeddings: bool = False
    """Whether ``/v1/embeddings`` batches run under Netmind's prefix (Netmind: "coming soon")."""
    presigned_max_bytes: int = 100_000_000
    """The largest body a presigned PUT takes (Netmind: 100 MB per batch file); above: 413."""


def ctx(request: Request) -> Context:
    """Return the :class:`Context` of the app serving ``request``."""
    context: Context = request.app.state.ctx
    return context
