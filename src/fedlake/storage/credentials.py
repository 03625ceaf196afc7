"""A bearer token for the storage calls of one block of code (one thread or task).

The transfer engine holds a short-lived token per transfer and per side (``storage.read``
for the source, ``storage.create``/``modify`` for the destination); plugins are shared,
thread-safe instances, so the token cannot be an option of the plugin. Code that runs
storage calls for one transfer wraps them in :func:`bearer`; plugins that send tokens
(WebDAV/HTTP) use :func:`current_bearer` when a call names no token of its own, before
their instance's token. A ``ContextVar`` keeps it to the thread (or asyncio task) that set
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["bearer", "current_bearer"]

_BEARER: ContextVar[str | None] = ContextVar("fedlake_storage_bearer", default=None)


@contextmanager
def bearer(token: str | None) -> Iterator[None]:
    """Storage calls inside the block present ``token`` (None: the plugins' own)."""
    reset = _BEARER.set(token)
    try:
        yield
    finally:
        _BEARER.reset(reset)


def current_bearer() -> str | None:
    """The token of the innermost :func:`bearer` block, if any."""
    return _BEARER.get()
