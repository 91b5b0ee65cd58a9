"""What the route handlers share: the store, the runner and the server's settings."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ._runner import Runner
from ._store import Store


@dataclass(frozen=True)
class Context:
    """Per-server state handed to every route through ``app.state.ctx``."""

    store: Store
    runner: Runner
    secret: bytes
    presign_ttl: float
    expire_after: float | None
    seed: int
    shuffle: bool


def ctx(request: Request) -> Context:
    """Return the :class:`Context` of the app serving ``request``."""
    context: Context = request.app.state.ctx
    return context
